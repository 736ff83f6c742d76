"""A compact Markdown summary (verdict, headline table, decision guide) for CI job summaries
and pull-request comments, where an HTML page cannot be shown inline."""

from __future__ import annotations

from persistbench.report.data import MachineResults
from persistbench.report.guide import PICK_MEASURES, Pick, guide
from persistbench.report.html import headline
from persistbench.report.values import plain
from persistbench.report.verdict import NEEDS, verdict


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _pick_text(p: Pick | None) -> str:
    if p is None:
        return "-"
    if p.count > 1 and p.best_value.text() == p.worst_value.text():
        return f"all {p.count}: {p.best_value}"
    return f"{p.best} {p.best_value}"


def render(mr: MachineResults) -> str:
    m = mr.machine
    guides = guide(mr)
    labels = [label for _, label, _ in PICK_MEASURES]
    lines = [
        f"# persistbench · {mr.machine_id}",
        "",
        " · ".join(map(str, headline(m))) + f" · {len(mr.cells)} cells, "
        f"{len(mr.failed())} not ok · runs: {', '.join(r['started'] for r in mr.runs)}",
        "",
        "## Verdict",
        "",
        "| model | " + " | ".join(NEEDS.values()) + " |",
        "|---|" + "---|" * len(NEEDS),
        *("| " + " | ".join(_cell(x) for x in (
            row.label, *(row.answers[need].text() for need in NEEDS))) + " |"
          for row in verdict(mr.cells)),
        "",
        "## Headline (medians)",
        "",
        "| model | size | " + " | ".join(labels) + " | ONNX | not ok |",
        "|---|---|" + "---|" * len(labels) + "---|---|",
    ]
    for g in guides:
        picks = [_pick_text(g.picks.get(label)) for label in labels]
        lines.append("| " + " | ".join(_cell(x) for x in (g.model, g.size, *picks, g.onnx,
                                                          str(g.failed))) + " |")
    lines += ["", "## Decision guide"]
    for g in guides:
        lines += ["", f"### {g.model} ({g.size})", ""]
        for i, (question, sentences) in enumerate(g.answers, 1):
            lines.append(f"{i}. **{question}**")
            lines += [f"   - {plain(s)}" for s in sentences]
    failed = mr.failed()
    if failed:
        lines += ["", "## Cells not ok", ""]
        lines += [f"- `{c['cell_id']}` {c['status']}: {_cell(c['reason'])}" for c in failed]
    return "\n".join(lines) + "\n"


def render_all(machines: list[MachineResults]) -> str:
    return "\n".join(render(mr) for mr in machines)
