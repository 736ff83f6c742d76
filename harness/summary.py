"""A terminal table of a results file: the run's answer before any report is opened."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.units import human_bytes, human_seconds


def _median(cell: dict, key: str) -> str:
    value = (cell.get(key) or {}).get("median")
    return human_seconds(value) if value is not None else "-"


def print_summary(data: dict, console: Console | None = None) -> None:
    console = console or Console()
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
    failed = [c for c in data["cells"] if c["status"] != "ok"]
    for cell in failed:
        console.print(f"[yellow]{cell['cell_id']}[/yellow] {cell['status']}: {cell['reason']}",
                      markup=True, highlight=False, soft_wrap=True)
