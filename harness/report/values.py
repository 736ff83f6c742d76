"""Numbers as the report shows them: humanised text, with the exact value kept for hover.

Results hold SI base units; a `Num` carries one such value and its unit, so every renderer
(HTML with a `title` attribute, Markdown, the terminal) humanises it the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from persistbench.results.precision import relative_halfwidth
from persistbench.results.units import human_bytes, human_seconds


@dataclass(frozen=True)
class Num:
    value: float | int | None
    unit: str = ""  # "s", "B", "B/s", "x" (a ratio), "%" (a fraction 0..1) or "" (plain)
    n: int | None = None  # a measured median: its number of samples
    halfwidth: float | None = None  # and its 95 % interval's half-width, relative

    def text(self) -> str:
        plain = self._plain()
        if self.n is None or plain in ("-", "∞"):
            return plain
        if self.halfwidth is None:
            return f"{plain} (n={self.n})"
        return f"{plain} ±{self.halfwidth * 100:.2g}\u00a0% (n={self.n})"

    def _plain(self) -> str:
        v = self.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float) and math.isinf(v):
            return "∞"
        if self.unit == "s":
            return human_seconds(v)
        if self.unit == "B":
            return human_bytes(v)
        if self.unit == "B/s":
            return f"{human_bytes(v)}/s"
        if self.unit == "x":
            return f"{v:.3g}×"
        if self.unit == "%":
            return f"{v * 100:.3g}\u00a0%"
        return str(v) if isinstance(v, int) else f"{v:.4g}"

    def exact(self) -> str:
        v = self.value
        if v is None:
            return "not measured"
        unit = {"B": " bytes", "s": " s", "B/s": " bytes/s", "x": " (ratio)",
                "%": " (fraction)"}.get(self.unit, "")
        if self.n is None:
            return f"{v!r}{unit}"
        spread = ("no 95 % interval (fewer than 6 samples)" if self.halfwidth is None else
                  f"95 % interval of the median ±{self.halfwidth:.3g} (relative)")
        return f"median {v!r}{unit} of {self.n} samples; {spread}"

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class Hover:
    """A short text whose long story (a warning's text, the per-model outcomes of a matrix
    cell, a list of audit events) waits on hover, so a table stays readable."""

    text: str
    detail: str
    bad: bool = False  # shown in the report's colour for trouble

    def __str__(self) -> str:
        return self.text


Part = str | Num
Sentence = tuple[Part, ...]


def plain(sentence: Sentence) -> str:
    """A sentence as text: what Markdown and the terminal print."""
    return "".join(str(p) for p in sentence)


def median(measure) -> float | None:
    """The median of a timing dict `{"min","median","max","n"}` or a plain number."""
    if isinstance(measure, dict):
        return measure.get("median")
    if isinstance(measure, bool):
        return None
    return measure if isinstance(measure, int | float) else None


def measured(measure, unit: str = "s") -> Num:
    """A timing's median with its 95 % interval and sample count (`± 4 % (n=9)`): the
    headline form. A plain number, or a timing without samples, is shown bare."""
    if not isinstance(measure, dict) or measure.get("median") is None:
        return Num(median(measure), unit)
    samples = measure.get("samples") or []
    return Num(measure["median"], unit, n=measure.get("n") or len(samples),
               halfwidth=relative_halfwidth(samples) if samples else None)
