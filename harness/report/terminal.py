"""The run's answer in the terminal, before any report is opened.

One table per experiment that ran: the first table of that experiment's report section
(`persistbench.report.views`), so the terminal and the page never disagree and a new experiment's
view shows up here without more code. Then the verdict for the models measured, the
per-step overhead and the cells that failed.
"""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from persistbench.report.blocks import Table as ViewTable
from persistbench.report.values import Hover
from persistbench.report.verdict import render_terminal, verdict
from persistbench.report.views import sections
from persistbench.results.protocols import floors
from persistbench.results.units import human_seconds

CELL_WIDTH = 60  # a long reason or loader message is cut: the failed cells list has it whole


def overhead_summary(data: dict) -> dict | None:
    """Per-step cost from a cell's start to its first measurement (fork + reading the model)."""
    spans = [o["to_first_measurement_s"] for c in data["cells"] for o in c.get("overhead", [])]
    spawns = [o["spawn_s"] for c in data["cells"] for o in c.get("overhead", [])]
    if not spans:
        return None
    return {"steps": len(spans), "to_first_measurement_median_s": statistics.median(spans),
            "to_first_measurement_max_s": max(spans), "spawn_median_s": statistics.median(spawns)}


def text(value) -> str:
    """A view's cell value as terminal text (markup-safe: rich would eat "[...]")."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "[red]no[/red]"
    shown = str(value)
    if len(shown) > CELL_WIDTH:
        shown = shown[:CELL_WIDTH - 1] + "…"
    shown = escape(shown)
    if isinstance(value, Hover) and value.bad:
        return f"[red]{shown}[/red]"
    return shown


def experiment_tables(data: dict) -> list[Table]:
    """Each experiment's first report table, as a rich table titled after the experiment."""
    grouped: dict[str, list[dict]] = {}
    for cell in data["cells"]:
        grouped.setdefault(cell["experiment"], []).append(cell)
    out = []
    for section in sections(grouped, data["machine"]):
        first = next((b for b in section.blocks if isinstance(b, ViewTable)), None)
        if first is None:
            continue
        table = Table(*first.columns, title=f"{section.experiment}: {first.title}")
        for row in first.rows:
            table.add_row(*[text(v) for v in row])
        out.append(table)
    return out


def print_summary(data: dict, console: Console | None = None) -> None:
    # Logs and CI are not terminals; do not squeeze the tables into 80 columns there.
    console = console or Console(width=None if Console().is_terminal else 160)
    for table in experiment_tables(data):
        console.print(table)
    rows = verdict(data["cells"])
    if rows:
        render_terminal(rows, console, title="verdict (this run's cells)")
    overhead = overhead_summary(data)
    if overhead:
        console.print(
            f"per-step overhead, cell start to first measurement: median "
            f"{human_seconds(overhead['to_first_measurement_median_s'])}, max "
            f"{human_seconds(overhead['to_first_measurement_max_s'])} over "
            f"{overhead['steps']} child processes (fork alone: median "
            f"{human_seconds(overhead['spawn_median_s'])})", highlight=False)
    measured = floors(data["cells"])
    if measured:
        console.print("harness floor (timing an empty phase, median): " + ", ".join(
            f"{name} {human_seconds(value)}" for name, value in sorted(measured.items())),
            highlight=False)
    failed = [c for c in data["cells"] if c["status"] != "ok"]
    for cell in failed:
        console.print(f"[yellow]{escape(cell['cell_id'])}[/yellow] {cell['status']}: "
                      f"{escape(cell['reason'])}",
                      markup=True, highlight=False, soft_wrap=True)
