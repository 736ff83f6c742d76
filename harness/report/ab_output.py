"""How a same-session A/B is shown in the terminal: the two sides and what differs between
them, the rule, what the evidence could detect, then the changes (every measure with
`--all`). The decisions are made in `report.ab`."""

from __future__ import annotations

from persistbench.report.ab import TARGET, ABComparison
from persistbench.report.compare import MEMORY_FLOOR_BYTES
from persistbench.report.compare_output import ratio_text, short_cell
from persistbench.report.paired import MIN_PAIRS, POWER


def side_lines(comp: ABComparison) -> list[str]:
    """Each side as given, its interpreter, and the library versions that differ."""
    lines = []
    for side, env in comp.sides.items():
        lines.append(f"{side.upper()} = {env.get('spec')}  ({env.get('python')})")
    va, vb = (comp.sides[s].get("versions") or {} for s in ("a", "b"))
    differ = [f"{lib} {va.get(lib)} -> {vb.get(lib)}" for lib in sorted({*va, *vb})
              if va.get(lib) != vb.get(lib)]
    lines.append("versions that differ (A -> B): " + (", ".join(differ) or "none"))
    return lines


def rule_lines(comp: ABComparison) -> list[str]:
    return [
        "Times and peak memory: one log ratio B/A per pair of blocks (the median over their "
        "steps, taken back to back in a random order, of B/A of each step's fastest run; "
        "fresh processes each round); the change is "
        "their Hodges-Lehmann estimate, with the exact signed-rank interval at "
        f"{comp.level * 100:.4g} %. Flagged when a Wilcoxon signed-rank test beyond "
        f"+-{comp.threshold:g} % (times) or +-{comp.memory_threshold:g} % (memory; changes "
        f"under {MEMORY_FLOOR_BYTES // 2**20} MiB are no change) passes Benjamini-Hochberg at "
        f"alpha {comp.alpha:g} across the {comp.tested} measures tested and the interval lies "
        f"beyond it. Fewer than {MIN_PAIRS} pairs: inconclusive, never a failure.",
        "File sizes are deterministic: any change is flagged.",
        *(["Warm loads and dumps are judged by the CPU time of each run (recorded beside its "
           "wall time: waiting for the CPU is the machine's, not the code's); cold loads by "
           "wall time."] if any(r.note.startswith("CPU time") for r in comp.rows) else []),
    ]


def power_lines(comp: ABComparison) -> list[str]:
    """Per family: the smallest change flagged with POWER probability from this evidence, and
    the pairs (rounds) that would flag TARGET."""
    out = []
    for p in sorted(comp.power, key=lambda p: p.family):
        need = ("the threshold is above it" if p.pairs_for_target is None else
                f"{p.pairs_for_target} rounds" + (
                    f" ({p.pairs_for_target - p.pairs} more)"
                    if p.pairs_for_target > p.pairs else " (reached)"))
        out.append(f"  {p.family}: x{p.detectable:.3f} from {p.pairs} rounds (pair sd "
                   f"{p.sd:.3f} in log); {TARGET - 1:.0%} needs {need}")
    return (["could detect (with "
             f"{POWER:.0%} probability, per measure family):", *out] if out else [])


def print_ab(comp: ABComparison, show_all: bool = False, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=80 if not Console().is_terminal else None)
    console.rule()
    for line in [*side_lines(comp), *rule_lines(comp), *power_lines(comp)]:
        console.print(line, highlight=False)
    rows = comp.rows if show_all else comp.flagged()
    if rows:
        table = Table("change", "measure", "B/A", "interval", "pairs", box=None,
                      pad_edge=False, header_style="bold")
        table.add_column("cell", overflow="fold")
        for r in sorted(rows, key=lambda r: (r.verdict, r.key, r.cell_id)):
            colour = {"worse": "red", "better": "green"}.get(r.verdict, "")
            verdict = f"[{colour}]{r.verdict}[/{colour}]" if colour else r.verdict
            interval = ("-" if r.low is None or r.high is None
                        else f"{r.low:.3f}-{r.high:.3f}")
            table.add_row(verdict, r.key, ratio_text(r.ratio, 3), interval, str(r.pairs),
                          short_cell(r.cell_id.replace("ab/", "roundtrip/", 1)))
        console.print(table)
    counts = comp.counts()
    console.print(f"{len(comp.rows)} measures in {len({r.cell_id for r in comp.rows})} cells: "
                  f"{counts['worse']} worse, {counts['better']} better, {counts['same']} same, "
                  f"{counts['inconclusive']} inconclusive"
                  + ("" if show_all else " (--all lists every measure)"), highlight=False)
    for cell_id, status, reason in comp.failed:
        console.print(f"[yellow]{status}[/yellow] {cell_id}: {reason}", highlight=False)
