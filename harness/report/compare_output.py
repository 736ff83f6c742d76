"""How a comparison is shown: the terminal tables (changes first, then the rule and the
drift it removed) and the HTML page. The decisions themselves are made in `compare`."""

from __future__ import annotations

import math
from pathlib import Path

from persistbench.report.compare import (
    CPU_JUDGED,
    MEMORY_FLOOR_BYTES,
    METHOD_DIFFERS,
    Comparison,
    Row,
)


def short_cell(cell_id: str) -> str:
    """model/size/format: the experiment is the same for most rows and costs 10 columns."""
    return cell_id.split("/", 1)[1] if cell_id.startswith("roundtrip/") else cell_id


def ratio_text(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:.{digits}f}" if math.isfinite(x) else "inf"


def interval_text(row: Row) -> str:
    if row.low is None or row.high is None:
        return "-"
    return f"{row.low:.2f}-{row.high:.2f}"


def rule_text(comp: Comparison) -> list[str]:
    """The decision rule as implemented, with the numbers this comparison used."""
    level = f"{comp.level * 100:.6g} %"  # 99.9957, not a rounded 100
    return [
        "Times and peak memory: ratio of medians B/A, "
        + ("divided by the common factor of its family, " if comp.drift else "")
        + f"with a {level} interval: log ratio +- z x spread, the spread being the root sum "
        "of squares of a two-level bootstrap sd (passes, then samples within a pass) and the "
        "run-to-run spread of the family's cells. Flagged only when the whole interval lies beyond "
        f"{comp.threshold:g} % (times) or {comp.memory_threshold:g} % (memory; changes under "
        f"{MEMORY_FLOOR_BYTES // 2**20} MiB are no change), Benjamini-Hochberg at alpha "
        f"{comp.alpha:g} across the {comp.tested} measures tested (interval level adjusted "
        "to match). Inside both bounds: same; otherwise, or with fewer than 2 passes a "
        "side: inconclusive, which never fails the gate.",
        "File sizes and fidelity scores are deterministic: any change is flagged.",
        *(["Warm loads and dumps (" + ", ".join(CPU_JUDGED) + ") are judged by the CPU time of "
           "their runs, recorded beside the wall time in the same process (time spent waiting "
           "for the CPU is the machine's, not the code's); cold loads by wall time."]
          if any(r.note.startswith("CPU time") for r in comp.rows) else []),
    ]


def drift_text(comp: Comparison) -> str:
    names = {"memory_copy_bps": "memory copy", "page_cache_read_bps": "page-cache read",
             "cold_read_bps": "cold read", "write_fsync_bps": "write+fsync"}
    parts = [f"{k} x{v:.2f}" for k, v in sorted(comp.factors.items())]
    cal = [f"{names.get(k, k)} x{v:.2f}" for k, v in sorted(comp.calibration.items())]
    spreads = [f"{k} {v:.2f} (flags from x{smallest_flaggable(comp, k):.2f})"
               for k, v in sorted(comp.spreads.items()) if v > 0]
    text = "common factors B/A: " + (", ".join(parts) or "none")
    text += "; calibration B/A: " + ", ".join(cal) if cal else ""
    return text + ("; run-to-run spread of a cell (sd of log ratio, empirical null) and the "
                   "smallest change it lets the rule flag: " + ", ".join(spreads)
                   if spreads else "")


def smallest_flaggable(comp: Comparison, family: str) -> float:
    """The least relative change of a family the rule can flag, given its spread: the
    interval (z x spread either side) must clear the threshold. A lower bound: a cell's own
    bootstrap sd widens its interval beyond this. Makes "inconclusive" read as "smaller than
    this, on this machine", not as "no change"."""
    from scipy.stats import norm

    pct = comp.memory_threshold if family.endswith("_bytes") else comp.threshold
    z = float(norm.isf((1 - comp.level) / 2))
    return math.exp(math.log1p(pct / 100) + z * comp.spreads[family])


def power_lines(comp: Comparison, target: float = 1.05, power: float = 0.8) -> list[str]:
    """Per family: the smallest change flagged with `power` probability given its typical
    spread (its cells' bootstrap sd and the family's run-to-run spread, as the rule combines
    them), and the passes a side `target` would need. Only the bootstrap part shrinks with
    more passes: when the run-to-run spread alone is too wide, no number of passes reaches
    the target, and a same-session `persistbench ab` is the way."""
    from statistics import median

    from scipy.stats import norm

    z = float(norm.isf((1 - comp.level) / 2) + norm.isf(1 - power))
    out = []
    for family, spread in sorted(comp.spreads.items()):
        rows = [r for r in comp.rows if r.key == family and r.sampling is not None]
        if not rows:
            continue
        sampling = median(r.sampling for r in rows)
        passes = int(median(min(r.passes) for r in rows))
        pct = comp.memory_threshold if family.endswith("_bytes") else comp.threshold
        limit = math.log1p(pct / 100)
        smallest = math.exp(limit + z * math.hypot(sampling, spread))
        room = (math.log(target) - (limit if target > 1 + pct / 100 else 0.0)) / z
        at = "" if target > 1 + pct / 100 else " at --threshold 0"
        if spread >= room:
            need = (f"unreachable by more passes{at} (run-to-run spread {spread:.2f} alone "
                    "is too wide: use `persistbench ab`)")
        else:
            k = math.ceil(passes * sampling ** 2 / (room ** 2 - spread ** 2))
            need = f"{max(k, 2)} passes a side{at} ({max(k - passes, 0)} more)"
        out.append(f"  {family}: x{smallest:.2f} from {passes} passes a side; "
                   f"{target - 1:.0%} needs {need}")
    return ([f"could detect (with {power:.0%} probability, per measure family):", *out]
            if out else [])


def print_comparisons(comparisons: list[Comparison], show_all: bool = False, console=None
                      ) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=80 if not Console().is_terminal else None)
    for comp in comparisons:
        console.rule()
        console.print(f"A = {comp.a_path}\nB = {comp.b_path}", highlight=False)
        if comp.cross_machine:
            console.print(f"different machines: A {comp.a_machine}, B {comp.b_machine}",
                          highlight=False)
        for line in rule_text(comp):
            console.print(line, highlight=False)
        console.print(drift_text(comp), highlight=False)
        for line in power_lines(comp):
            console.print(line, highlight=False)
        for family, factor in comp.shared_shift().items():
            console.print(f"[yellow]every {family} moved x{factor:.2f} together[/yellow]: "
                          "the machine (see calibration) or a change shared by all formats; "
                          "cells are judged relative to it", highlight=False)
        rows = comp.ordered() if show_all else [r for r in comp.ordered()
                                                if r.flag or r.verdict == "unstable"]
        if rows:
            table = Table("change", "measure", "B/A*", "interval", box=None,
                          pad_edge=False, header_style="bold")
            table.add_column("cell", overflow="fold")  # long names wrap, never cut
            for r in rows:
                colour = {"worse": "red", "better": "green"}.get(r.verdict, "")
                verdict = f"[{colour}]{r.verdict}[/{colour}]" if colour else r.verdict
                shown = r.relative if r.relative is not None else r.ratio
                table.add_row(verdict, r.key, ratio_text(shown), interval_text(r),
                              short_cell(r.cell_id))
            console.print(table)
            console.print("* relative to the family's common factor when one was used",
                          highlight=False)
            for r in rows:
                if r.verdict == "unstable":
                    console.print(f"unstable {short_cell(r.cell_id)} {r.key}: {r.note}",
                                  highlight=False)
        counts = comp.counts()
        console.print(f"{len(comp.rows)} measures in {len({r.cell_id for r in comp.rows})} "
                      f"matching cells: {counts['worse']} worse, {counts['better']} better, "
                      f"{counts['same']} same, {counts['inconclusive']} inconclusive, "
                      f"{counts['unstable']} unstable (never fail the gate)"
                      + (f", {counts[METHOD_DIFFERS]} taken with different methods (not "
                         "compared)" if counts[METHOD_DIFFERS] else "")
                      + (f"; {comp.unjudged} measures beyond the headline ones not judged "
                         "(--all judges and lists every measure)" if comp.unjudged else "")
                      + ("" if show_all or comp.unjudged else " (--all lists every measure)"),
                      highlight=False)
        for cid, sa, sb in comp.status_changes:
            console.print(f"[yellow]status changed[/yellow] {cid}: {sa} -> {sb}",
                          highlight=False)
        for label, ids in (("only in A", comp.only_a), ("only in B", comp.only_b)):
            for cid in ids:
                console.print(f"[yellow]{label}[/yellow] {cid}", highlight=False)


def write_html(comparisons: list[Comparison], path: Path) -> Path:
    from persistbench.report.pages import environment

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(environment().get_template("compare.html.j2").render(
        comparisons=comparisons, rule_text=rule_text, drift_text=drift_text,
        interval_text=interval_text, ratio_text=ratio_text),
        encoding="utf-8")
    return path
