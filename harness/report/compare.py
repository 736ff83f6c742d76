"""Side-by-side comparison of runs: per matching cell, the ratio B/A of every measure.

A measure is any number of a cell whose key names its unit: `_s` and `_bytes` (lower is
better), `_per_s` and `_bps` (higher is better), plus `label_agreement` (higher) and
any `_diff` (lower). Nested dicts and lists of dicts (e.g. inference latencies) are
walked, so new experiments are compared without code here.

A change is flagged when it exceeds the threshold *and* the repeats do not contradict it:
when both sides kept samples and there are enough of them for a Mann-Whitney U test to reach
`ALPHA`, the change must also be significant; with fewer repeats (e.g. 3 cold loads), the two
min..max ranges must not overlap. A size or score taken once is judged by its ratio; a
timing taken once (its noise unknown) is shown but never flagged.
Peak-memory changes under `MEMORY_FLOOR_BYTES`
are page-granularity noise and never flagged. Across machines, times are also shown
normalised by each machine's calibrated bandwidth (time × bandwidth), so a machine that is
faster overall does not hide a format that got relatively slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from scipy.stats import mannwhitneyu

from harness.report.values import Num

ALPHA = 0.05
MEMORY_FLOOR_BYTES = 2**20
META = {"cell_id", "experiment", "model", "size", "format", "variant", "status", "reason",
        "elapsed_s", "overhead"}
HIGHER_IS_BETTER = {"label_agreement"}


@dataclass(frozen=True)
class Measure:
    key: str
    value: float
    unit: str  # "s", "B", "B/s" (a rate) or "" (a score)
    lower_is_better: bool
    samples: tuple[float, ...] = ()
    spread: tuple[float, float] | None = None  # (min, max) of two or more repeats


def _spread(samples: tuple[float, ...], stats: dict | None = None) -> tuple[float, float] | None:
    if len(samples) >= 2:
        return min(samples), max(samples)
    if stats and stats.get("n", 0) >= 2 and None not in (stats.get("min"), stats.get("max")):
        return float(stats["min"]), float(stats["max"])
    return None


def _kind(key: str) -> tuple[str, bool] | None:
    """(unit, lower is better) of a key, or None when the key is not a comparable measure."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in HIGHER_IS_BETTER:
        return "", False
    if leaf.endswith("_diff"):
        return "", True
    if leaf.endswith(("_per_s", "_bps")):
        return "B/s" if leaf.endswith("_bps") else "", False
    if leaf.endswith("_s"):
        return "s", True
    if leaf.endswith("_bytes"):
        return "B", True
    return None


def _samples(container: dict, key: str) -> tuple[float, ...]:
    """The raw samples kept next to a measure: `x_s_samples`, `x_samples_bytes`, `samples_s`."""
    if key.startswith("median_"):  # {"median_s": …, "samples_s": […]}
        name = "samples_" + key[len("median_"):]
    elif key.endswith("_bytes"):
        name = key[:-len("_bytes")] + "_samples_bytes"
    else:
        name = f"{key}_samples"
    found = container.get(name)
    return tuple(float(v) for v in found) if isinstance(found, list) else ()


def _identity(item: dict) -> str:
    """How an entry of a list is recognised on both sides: its labels, e.g. `sklearn/predict/1`."""
    parts = [str(v) for k, v in item.items()
             if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)
                                       and _kind(k) is None and k != "n")]
    return "/".join(parts)


def measures(container: dict, prefix: str = "") -> dict[str, Measure]:
    out: dict[str, Measure] = {}
    for key, value in container.items():
        if (not prefix and key in META) or "samples" in key:
            continue
        path = f"{prefix}{key}"
        kind = _kind(key)
        if isinstance(value, dict) and "median" in value and kind:
            if value["median"] is not None:
                samples = _samples(container, key)
                out[path] = Measure(path, float(value["median"]), kind[0], kind[1], samples,
                                    _spread(samples, value))
        elif isinstance(value, dict):
            out.update(measures(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            ids = [_identity(v) for v in value]
            if len(set(ids)) < len(ids) or not all(ids):
                ids = [str(i) for i in range(len(value))]
            for ident, item in zip(ids, value, strict=True):
                out.update(measures(item, f"{path}[{ident}]."))
        elif kind and isinstance(value, int | float) and not isinstance(value, bool):
            samples = _samples(container, key)
            out[path] = Measure(path, float(value), kind[0], kind[1], samples, _spread(samples))
    return out


@dataclass
class Row:
    cell_id: str
    key: str
    a: Num
    b: Num
    ratio: float
    normalised: float | None
    p_value: float | None
    worse_by: float  # fraction: 0.25 = 25 % worse, negative = better
    decisive: bool  # the change is real as far as the samples can tell
    flag: str = ""  # "worse", "better" or ""


@dataclass
class Comparison:
    a_path: str
    b_path: str
    a_machine: str
    b_machine: str
    threshold: float
    rows: list[Row] = field(default_factory=list)
    status_changes: list[tuple[str, str, str]] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def cross_machine(self) -> bool:
        return self.a_machine != self.b_machine

    def flagged(self) -> list[Row]:
        return [r for r in self.rows if r.flag]

    def regressions(self, pct: float) -> list[str]:
        """What got worse by more than `pct` percent (plus cells that stopped working)."""
        worse = [f"{r.cell_id} {r.key}: {r.worse_by:+.0%}" for r in self.rows
                 if r.decisive and r.worse_by * 100 > pct]
        broken = [f"{cid}: {sa} -> {sb}" for cid, sa, sb in self.status_changes if sa == "ok"]
        return worse + broken


def _ratio(a: float, b: float) -> float:
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def _p_value(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _test_can_decide(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether the exact two-sided test could reach ALPHA at all with these sample counts."""
    return len(a) >= 2 and len(b) >= 2 and 2 / math.comb(len(a) + len(b), len(a)) < ALPHA


def _decisive(ma: Measure, mb: Measure, p: float | None) -> bool:
    """Is the change real as far as the repeats can tell?"""
    if p is not None and _test_can_decide(ma.samples, mb.samples):
        return p < ALPHA
    if ma.spread and mb.spread:  # too few repeats for the test: the ranges must not overlap
        return ma.spread[1] < mb.spread[0] or mb.spread[1] < ma.spread[0]
    # A size or a fidelity score is the same on every repeat: its ratio decides. A timing
    # taken once has unknown noise, so it cannot.
    return not (ma.unit == "s" or ma.key.endswith(("_per_s", "_bps")))


def bandwidth_key(key: str) -> str:
    """Which calibrated bandwidth a time is normalised by."""
    if "cold" in key:
        return "cold_read_bps"
    if key.startswith(("load", "dump")):
        return "page_cache_read_bps"
    return "memory_copy_bps"


def _normalised(m: Measure, ratio: float, cal_a: dict, cal_b: dict) -> float | None:
    """Times scale with the bandwidth (time × bandwidth), rates inversely; sizes do not."""
    is_rate = m.key.endswith(("_per_s", "_bps"))
    bw = bandwidth_key(m.key)
    if not (m.unit == "s" or is_rate) or not (cal_a.get(bw) and cal_b.get(bw)) \
            or math.isinf(ratio):
        return None
    scale = cal_b[bw] / cal_a[bw]
    return ratio / scale if is_rate else ratio * scale


def compare(a: dict, b: dict, a_path: str = "A", b_path: str = "B",
            threshold_pct: float = 10.0) -> Comparison:
    cells_a = {c["cell_id"]: c for c in a["cells"]}
    cells_b = {c["cell_id"]: c for c in b["cells"]}
    out = Comparison(a_path, b_path, a["machine"]["machine_id"], b["machine"]["machine_id"],
                     threshold_pct)
    out.only_a = [cid for cid in cells_a if cid not in cells_b]
    out.only_b = [cid for cid in cells_b if cid not in cells_a]
    cal_a = a["machine"].get("calibration") or {}
    cal_b = b["machine"].get("calibration") or {}
    for cid, ca in cells_a.items():
        cb = cells_b.get(cid)
        if cb is None:
            continue
        if ca["status"] != cb["status"]:
            out.status_changes.append((cid, ca["status"], cb["status"]))
        if ca["status"] != "ok" or cb["status"] != "ok":
            continue
        mb = measures(cb)
        for key, ma in measures(ca).items():
            if key not in mb:
                continue
            out.rows.append(_row(cid, ma, mb[key], cal_a, cal_b, out.cross_machine,
                                 threshold_pct))
    return out


def _row(cid: str, ma: Measure, mb: Measure, cal_a: dict, cal_b: dict, cross: bool,
         threshold_pct: float) -> Row:
    ratio = _ratio(ma.value, mb.value)
    worse_by = ratio - 1 if ma.lower_is_better else (math.inf if ratio == 0 else 1 / ratio - 1)
    p = _p_value(ma.samples, mb.samples)
    decisive = _decisive(ma, mb, p)
    if ma.unit == "B" and ma.samples and abs(mb.value - ma.value) < MEMORY_FLOOR_BYTES:
        decisive = False
    row = Row(cid, ma.key, Num(ma.value, ma.unit), Num(mb.value, mb.unit), ratio,
              _normalised(ma, ratio, cal_a, cal_b) if cross else None, p, worse_by, decisive)
    if decisive and abs(worse_by) * 100 > threshold_pct:
        row.flag = "worse" if worse_by > 0 else "better"
    return row


# ---------------------------------------------------------------------------- output

def print_comparisons(comparisons: list[Comparison], show_all: bool = False, console=None
                      ) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if Console().is_terminal else 200)
    for comp in comparisons:
        rows = comp.rows if show_all else comp.flagged()
        columns = ["cell", "measure", "A", "B", "B/A"]
        if comp.cross_machine:
            columns.append("B/A normalised")
        table = Table(*columns, "p", "change",
                      title=f"B = {comp.b_path} ({comp.b_machine}) vs A = {comp.a_path} "
                            f"({comp.a_machine})")
        for r in rows:
            colour = {"worse": "red", "better": "green"}.get(r.flag, "")
            cells = [r.cell_id, r.key, r.a.text(), r.b.text(), Num(r.ratio, "x").text()]
            if comp.cross_machine:
                cells.append(Num(r.normalised, "x").text())
            cells += ["-" if r.p_value is None else f"{r.p_value:.3g}",
                      f"[{colour}]{r.flag}[/{colour}]" if colour else ""]
            table.add_row(*cells)
        console.print(table)
        console.print(f"{len(comp.rows)} measures compared in "
                      f"{len({r.cell_id for r in comp.rows})} matching cells; "
                      f"{len(comp.flagged())} changed by more than {comp.threshold:g} %"
                      + ("" if show_all else " (shown; --all for every measure)"),
                      highlight=False)
        for cid, sa, sb in comp.status_changes:
            console.print(f"[yellow]status changed[/yellow] {cid}: {sa} -> {sb}",
                          highlight=False)
        for label, ids in (("only in A", comp.only_a), ("only in B", comp.only_b)):
            for cid in ids:
                console.print(f"[yellow]{label}[/yellow] {cid}", highlight=False)


def write_html(comparisons: list[Comparison], path: Path) -> Path:
    from harness.report.html import environment

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(environment().get_template("compare.html.j2").render(
        comparisons=comparisons, alpha=ALPHA), encoding="utf-8")
    return path
