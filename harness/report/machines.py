"""The cross-machine page: N machines side by side, on clock and on efficiency.

Absolute seconds answer "which machine is faster"; a load's throughput as a fraction of that
machine's own page-cache read bandwidth answers "does this format use the hardware well", which
is what compares an arm64 box with an x86_64 one. Figures taken with different methods (a peak
read from a reset high-water mark against one sampled from outside, say) stand side by side,
marked, and are never turned into a ratio or a winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from persistbench.report.blocks import Table
from persistbench.report.data import MachineResults
from persistbench.report.pages import environment
from persistbench.report.values import Hover, Num, median
from persistbench.results.methods import differing, run_methods

# (measure, title, unit, calibration denominator for the efficiency, what that denominator is)
MEASURES: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("load_s", "Warm load", "s", "page_cache_read_bps", "page-cache read"),
    ("load_cold_s", "Cold load", "s", "cold_read_bps", "cold read"),
    ("dump_s", "Dump", "s", "write_fsync_bps", "write + fsync"),
    ("load_peak_rss_bytes", "Peak memory while loading", "B", None, ""),
    ("dump_peak_rss_bytes", "Peak memory while dumping", "B", None, ""),
    ("file_bytes", "File size", "B", None, ""),
)
# A format wins on one machine and loses on another only when both margins are real.
WINNER_MARGIN = 1.05


@dataclass
class CrossMachine:
    machines: list[str]
    tables: list[Table] = field(default_factory=list)
    winner_changes: list[str] = field(default_factory=list)
    methods: Table | None = None
    calibration: Table | None = None


def _label(mr: MachineResults) -> str:
    return mr.machine_id


def _run_methods(mr: MachineResults) -> dict:
    """The methods of the machine's latest run that recorded any."""
    for run in reversed(mr.runs):
        if run_methods(run):
            return run_methods(run)
    return {}


def _roundtrip(mr: MachineResults) -> dict[tuple[str, str, str], dict]:
    return {(c["model"], c["size"], c["format"]): c for c in mr.cells
            if c["experiment"] == "roundtrip" and c["status"] == "ok"}


def efficiency(cell: dict, key: str, calibration: dict | None, denominator: str) -> float | None:
    """Throughput (file bytes / median seconds) as a fraction of the machine's bandwidth."""
    seconds = median(cell.get(key))
    size = cell.get("file_bytes")
    bandwidth = (calibration or {}).get(denominator)
    if not seconds or not size or not bandwidth:
        return None
    return size / seconds / bandwidth


def _comparable(key: str, machines: list[MachineResults]) -> dict[str, tuple[str, str]]:
    """The first method difference among the machines for this measure (empty: comparable)."""
    first = _run_methods(machines[0])
    for mr in machines[1:]:
        diff = differing(key, first, _run_methods(mr))
        if diff:
            return diff
    return {}


def _measure_table(machines: list[MachineResults], cells: list[dict], keys: list[tuple],
                   measure: tuple) -> Table | None:
    key, title, unit, denominator, denominator_name = measure
    diff = _comparable(key, machines)
    columns = ["model", "size", "format"] + [_label(mr) for mr in machines]
    if denominator and not diff:
        columns += [f"{_label(mr)}: % of {denominator_name}" for mr in machines]
    rows = []
    for model, size, fmt in keys:
        found = [c.get((model, size, fmt)) for c in cells]
        values = [median((cell or {}).get(key)) for cell in found]
        if all(v is None for v in values):
            continue
        row: list = [model, size, fmt]
        for v in values:
            num = Num(v, unit)
            row.append(Hover(f"{num.text()} †", f"{num.exact()}; taken with another method "
                             "than on the other machines") if diff and v is not None else num)
        if denominator and not diff:
            row += [Num(efficiency(cell, key, mr.calibration, denominator)
                        if cell else None, "%") for cell, mr in zip(found, machines, strict=True)]
        rows.append(row)
    if not rows:
        return None
    note = ""
    if diff:
        family, (a, b) = next(iter(diff.items()))
        note = (f"† Not comparable across these machines: {family} was measured as {a!r} on "
                f"one and {b!r} on another; shown side by side, never as a ratio.")
    elif denominator:
        note = (f"Efficiency: file bytes / median time as a fraction of the machine's own "
                f"calibrated {denominator_name} bandwidth (higher uses the hardware better).")
    return Table(title, columns, rows, note)


def winner_changes(machines: list[MachineResults], key: str = "load_s",
                   verb: str = "loads") -> list[str]:
    """Sentences for each model whose fastest format is not the same on every machine."""
    if _comparable(key, machines):
        return []
    cells = [_roundtrip(mr) for mr in machines]
    models = dict.fromkeys((m, s) for c in cells for (m, s, _) in c)
    out = []
    for model, size in models:
        formats = [f for f in dict.fromkeys(f for c in cells for (m, s, f) in c
                                            if (m, s) == (model, size))
                   if all(median(c.get((model, size, f), {}).get(key)) for c in cells)]
        if len(formats) < 2:
            continue
        times = [{f: median(c[(model, size, f)][key]) for f in formats} for c in cells]
        winners = [min(t, key=t.get) for t in times]
        if len(set(winners)) < 2:
            continue
        a, b = winners[0], next(w for w in winners if w != winners[0])
        margins = [t[b] / t[a] for t in times]  # > 1: a faster there; < 1: b faster
        if not (any(r >= WINNER_MARGIN for r in margins)
                and any(r <= 1 / WINNER_MARGIN for r in margins)):
            continue
        faster_a = [_label(mr) for mr, r in zip(machines, margins, strict=True) if r > 1]
        faster_b = [_label(mr) for mr, r in zip(machines, margins, strict=True) if r < 1]
        out.append(f"{model} ({size}): on {', '.join(faster_a)} {a} {verb} it faster than "
                   f"{b}; on {', '.join(faster_b)} the reverse.")
    return out


def cross_machine(machines: list[MachineResults]) -> CrossMachine:
    cells = [_roundtrip(mr) for mr in machines]
    keys = list(dict.fromkeys(k for c in cells for k in c))
    page = CrossMachine([_label(mr) for mr in machines])
    for measure in MEASURES:
        table = _measure_table(machines, cells, keys, measure)
        if table is not None:
            page.tables.append(table)
    page.winner_changes = winner_changes(machines)
    families = sorted({f for mr in machines for f in _run_methods(mr)})
    page.methods = Table("How each machine measured", ["method", *page.machines],
                         [[f, *(_run_methods(mr).get(f, "unrecorded") for mr in machines)]
                          for f in families])
    cal_keys = (("memory_copy_bps", "memory copy"), ("page_cache_read_bps", "page-cache read"),
                ("cold_read_bps", "cold read"), ("write_fsync_bps", "write + fsync"))
    page.calibration = Table("Calibrated bandwidths (the efficiency denominators)",
                             ["bandwidth", *page.machines],
                             [[label, *(Num((mr.calibration or {}).get(k), "B/s")
                                        for mr in machines)] for k, label in cal_keys])
    return page


def write_cross_machine(machines: list[MachineResults], output_dir: Path) -> Path | None:
    """`output_dir/machines.html` when there are at least two machines to put side by side."""
    if len(machines) < 2:
        return None
    path = Path(output_dir) / "machines.html"
    path.write_text(environment().get_template("machines.html.j2").render(
        page=cross_machine(machines), margin=WINNER_MARGIN), encoding="utf-8")
    return path
