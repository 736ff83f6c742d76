"""A terminal table of a results file: the run's answer before any report is opened."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.units import human_bytes, human_seconds


def _median(cell: dict, key: str) -> str:
    value = (cell.get(key) or {}).get("median")
    return human_seconds(value) if value is not None else "-"


def overhead_summary(data: dict) -> dict | None:
    """Per-step cost from a cell's start to its first measurement (fork + reading the model)."""
    import statistics

    spans = [o["to_first_measurement_s"] for c in data["cells"] for o in c.get("overhead", [])]
    spawns = [o["spawn_s"] for c in data["cells"] for o in c.get("overhead", [])]
    if not spans:
        return None
    return {"steps": len(spans), "to_first_measurement_median_s": statistics.median(spans),
            "to_first_measurement_max_s": max(spans), "spawn_median_s": statistics.median(spawns)}


def print_summary(data: dict, console: Console | None = None) -> None:
    # Logs and CI are not terminals; do not squeeze the table into 80 columns there.
    console = console or Console(width=None if Console().is_terminal else 160)
    table = Table("model", "size", "format", "status", "file", "dump", "load", "cold load",
                  "dump +RSS", "load +RSS", "equal", title="roundtrip (medians)")
    for cell in data["cells"]:
        if cell["experiment"] != "roundtrip":
            continue
        ok = cell["status"] == "ok"
        equal = cell.get("roundtrip_equal")
        table.add_row(
            cell["model"], cell["size"], cell["format"],
            cell["status"] if ok else f"[red]{cell['status']}[/red]",
            human_bytes(cell["file_bytes"]) if "file_bytes" in cell else "-",
            _median(cell, "dump_s"), _median(cell, "load_s"), _median(cell, "load_cold_s"),
            human_bytes(cell["dump_peak_rss_bytes"]) if "dump_peak_rss_bytes" in cell else "-",
            human_bytes(cell["load_peak_rss_bytes"]) if "load_peak_rss_bytes" in cell else "-",
            "-" if equal is None else ("yes" if equal else "[red]no[/red]"),
        )
    console.print(table)
    overhead = overhead_summary(data)
    if overhead:
        console.print(
            f"per-step overhead, cell start to first measurement: median "
            f"{human_seconds(overhead['to_first_measurement_median_s'])}, max "
            f"{human_seconds(overhead['to_first_measurement_max_s'])} over "
            f"{overhead['steps']} child processes (fork alone: median "
            f"{human_seconds(overhead['spawn_median_s'])})", highlight=False)
    failed = [c for c in data["cells"] if c["status"] != "ok"]
    for cell in failed:
        console.print(f"[yellow]{cell['cell_id']}[/yellow] {cell['status']}: {cell['reason']}",
                      markup=True, highlight=False, soft_wrap=True)
