"""Humanised numbers for people; results keep SI base units, these only render them."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(float(n))
    if n < 999.5:  # below this, rounding cannot carry into the next unit ("1e+03 kB")
        return f"{sign}{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 999.5:
            return f"{sign}{n:.3g} {unit}"
    return f"{sign}{n / 1000:.3g} TB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 60:
        return f"{s / 60:.3g} min"
    if s >= 0.9995:
        return f"{s:.3g} s"
    if s >= 0.9995e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"
