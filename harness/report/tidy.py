"""Cells as tidy rows: one row per cell and measure, for data-frame users.

Every measure a comparison sees (`report.compare.measures`: any number whose key names its
unit, nested ones too) becomes one row, with the protocol it was taken under
(`results.protocols`), so a table of figures never mixes a warm load with a fresh
interpreter's. A cell with no measure (unsupported, error, timeout) still gets one row, its
measure empty, so its status and reason are not lost in the table.
"""

from __future__ import annotations

from persistbench.report.compare import measures
from persistbench.results.protocols import protocol

COLUMNS = ("model", "size", "format", "experiment", "measure", "protocol", "unit", "median",
           "interval", "n", "status", "variant", "reason", "machine")


def unit_of(key: str, unit: str) -> str:
    """The unit as a reader names it: rates per second read `1/s`, scores stay empty."""
    return "1/s" if key.endswith("_per_s") else unit


def tidy_rows(cells: list[dict], machine: str = "") -> list[dict]:
    """Rows in `COLUMNS` order; `interval` is the (min, max) of the samples, or None."""
    rows = []
    for cell in cells:
        base = {"model": cell["model"], "size": cell["size"], "format": cell["format"],
                "experiment": cell["experiment"]}
        tail = {"status": cell["status"], "variant": cell.get("variant", ""),
                "reason": cell.get("reason"), "machine": machine}
        found = measures(cell)  # a failed cell keeps what its earlier steps measured
        for key, m in found.items():
            how = protocol(cell["experiment"], key, cell)
            rows.append({**base, "measure": key, "protocol": how,
                         "unit": unit_of(key, m.unit), "median": m.value,
                         "interval": m.spread, "n": m.n, **tail})
        if not found:
            rows.append({**base, "measure": None, "protocol": None, "unit": None,
                         "median": None, "interval": None, "n": 0, **tail})
    return rows
