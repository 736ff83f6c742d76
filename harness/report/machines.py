"""The cross-machine page: N machines side by side, on clock and on efficiency.

Absolute seconds answer "which machine is faster"; a load's throughput as a fraction of that
machine's own page-cache read bandwidth answers "does this format use the hardware well", which
is what compares an arm64 box with an x86_64 one. Figures taken with different methods (a peak
read from a reset high-water mark against one sampled from outside, say) stand side by side,
marked, and are never turned into a ratio or a winner. Nor are the figures of a machine
whose fingerprint says it ran under an emulator (`persistbench.measure.emulation`): they are
the emulator's, not the CPU's, so they stand in the tables, marked, and enter no ratio.

The page opens with the answer most readers came for: per format, how fast each real machine
is relative to the first one (a geometric mean over the models both measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import geometric_mean

from persistbench.report.blocks import Block, Paragraph, Table, chart, figure
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
# The measures the opening chart sets side by side as speed ratios.
SPEED_MEASURES = (("load_s", "Warm load"), ("load_cold_s", "Cold load"), ("dump_s", "Dump"))
# A format wins on one machine and loses on another only when both margins are real.
WINNER_MARGIN = 1.05


@dataclass
class CrossMachine:
    machines: list[str]
    tables: list[Table] = field(default_factory=list)
    winner_changes: list[str] = field(default_factory=list)
    methods: Table | None = None
    calibration: Table | None = None
    speed: list[Block] = field(default_factory=list)


def emulated(mr: MachineResults) -> str | None:
    """How the machine's interpreter was emulated, as its fingerprint recorded it."""
    return mr.machine.get("emulated")


def _label(mr: MachineResults) -> str:
    return mr.machine_id + (" (emulated)" if emulated(mr) else "")


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


def _marked(num: Num, reasons: list[str]) -> Num | Hover:
    """A figure with the marks (†, ‡) of the reasons that apply, each explained on hover."""
    reasons = [r for r in reasons if r]
    if num.value is None or not reasons:
        return num
    return Hover(f"{num.text()} {''.join(r[0] for r in reasons)}",
                 "; ".join([num.exact(), *reasons]))


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
        for v, mr in zip(values, machines, strict=True):
            row.append(_marked(Num(v, unit), [
                "† taken with another method than on the other machines" if diff else "",
                f"‡ {emulated(mr)}: the emulator's figure, not the CPU's, in no ratio"
                if emulated(mr) else ""]))
        if denominator and not diff:
            row += [Num(efficiency(cell, key, mr.calibration, denominator)
                        if cell and not emulated(mr) else None, "%")
                    for cell, mr in zip(found, machines, strict=True)]
        rows.append(row)
    if not rows:
        return None
    note = ""
    if any(emulated(mr) for mr in machines):
        note = "‡ Measured under an emulator: shown, never in a ratio. "
    if diff:
        family, (a, b) = next(iter(diff.items()))
        note += (f"† Not comparable across these machines: {family} was measured as {a!r} on "
                 f"one and {b!r} on another; shown side by side, never as a ratio.")
    elif denominator:
        note += (f"Efficiency: file bytes / median time as a fraction of the machine's own "
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


def relative_speed(machines: list[MachineResults], key: str) -> dict[str, dict[str, tuple]]:
    """{machine: {format: (geometric mean, lowest, highest, models)}} of the first machine's
    median over each other machine's, for every (model, size) both measured: > 1 is faster.
    Empty when the machines measured `key` with different methods."""
    if len(machines) < 2 or _comparable(key, machines):
        return {}
    reference, *others = [_roundtrip(mr) for mr in machines]
    out: dict[str, dict[str, tuple]] = {}
    for mr, cells in zip(machines[1:], others, strict=True):
        ratios: dict[str, list[float]] = {}
        for (model, size, fmt), cell in cells.items():
            here, there = median(reference.get((model, size, fmt), {}).get(key)), \
                median(cell.get(key))
            if here and there:
                ratios.setdefault(fmt, []).append(here / there)
        out[_label(mr)] = {f: (geometric_mean(r), min(r), max(r), len(r))
                           for f, r in ratios.items()}
    return out


def speed_blocks(machines: list[MachineResults]) -> list[Block]:
    """The page's opening: the relative-speed chart over the real machines, and what it
    leaves out (emulated machines, measures taken with different methods), in sentences."""
    real = [mr for mr in machines if not emulated(mr)]
    notes = [f"{_label(mr)} is left out of every ratio: {emulated(mr)}; its figures are the "
             "emulator's, not the CPU's." for mr in machines if emulated(mr)]
    if len(real) < 2:
        return [Paragraph(" ".join([f"No relative speed: {len(real)} real machine(s) "
                                    "measured here, two are needed.", *notes]))]
    panels = []
    for key, title in SPEED_MEASURES:
        ratios = relative_speed(real, key)
        if ratios:
            panels.append((title, ratios))
        elif any(median(c.get(key)) for mr in real for c in _roundtrip(mr).values()):
            family, (a, b) = next(iter(_comparable(key, real).items()))
            notes.append(f"{title} is not compared: {family} was measured as {a!r} on one "
                         f"machine and {b!r} on another.")
    reference = _label(real[0])
    blocks: list[Block] = []
    if panels:
        blocks.append(figure(
            f"Relative speed per format, against {reference}", chart("ratio_bars", panels,
                                                                     reference),
            "Bar: the geometric mean over the models both machines measured of the reference's "
            "median time over this machine's (> 1×: faster); whisker: the slowest to the "
            "fastest model. Hover a bar for its numbers."))
    if notes:
        blocks.append(Paragraph(" ".join(notes)))
    return blocks


def cross_machine(machines: list[MachineResults]) -> CrossMachine:
    cells = [_roundtrip(mr) for mr in machines]
    keys = list(dict.fromkeys(k for c in cells for k in c))
    page = CrossMachine([_label(mr) for mr in machines])
    for measure in MEASURES:
        table = _measure_table(machines, cells, keys, measure)
        if table is not None:
            page.tables.append(table)
    page.winner_changes = winner_changes([mr for mr in machines if not emulated(mr)])
    page.speed = speed_blocks(machines)
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
