"""What a report section is made of (tables, figures drawn on demand, paragraphs), the
registry of views by experiment, and the helpers every view uses.

Adding a view for an experiment is one function in a views module:

    @view("myexperiment", "Title shown in the report")
    def _myexperiment(cells: list[dict], machine: dict) -> list[Block]:
        return [Table(...), figure(...), Paragraph(...)]

Experiments without a view get `generic_view`: a table of every cell with its status,
reason and scalar measures, so nothing measured is ever missing from the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from persistbench.report.values import Num


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]  # Num, str, bool or None per column
    note: str = ""


@dataclass
class Figure:
    """A chart drawn only when a page shows it: the terminal summary reads the same views
    and needs neither the drawing time nor matplotlib (the `report` extra)."""

    title: str
    draw: Callable[[], str | None]
    caption: str = ""

    @cached_property
    def svg(self) -> str | None:
        """The inline SVG, or None when no cell has the chart's measurements (as asv results
        with timings only): the page then says so in a line, and the rest of it stands."""
        return self.draw()


@dataclass
class Paragraph:
    text: str


Block = Table | Figure | Paragraph
View = Callable[[list[dict], dict], list[Block]]


@dataclass
class Section:
    experiment: str
    title: str
    blocks: list[Block] = field(default_factory=list)


VIEWS: dict[str, tuple[str, View]] = {}


def view(experiment: str, title: str) -> Callable[[View], View]:
    """Register the section of `experiment` (the documented hook for new experiments)."""

    def register(fn: View) -> View:
        VIEWS[experiment] = (title, fn)
        return fn

    return register


# --------------------------------------------------------------------------- helpers

def figure(title: str, draw: Callable[[], str | None], caption: str = "") -> Block:
    return Figure(title, draw, caption)


def chart(name: str, *args: Any, **kwargs: Any) -> Callable[[], str | None]:
    """`charts.<name>(*args, **kwargs)`, called (and matplotlib imported) only when drawn."""

    def draw() -> str | None:
        from persistbench.report import charts

        return getattr(charts, name)(*args, **kwargs)

    return draw


def row_label(cell: dict) -> str:
    return cell["model"] if cell["size"] == "small" else f"{cell['model']} ({cell['size']})"


def status(cell: dict) -> str:
    return cell["status"] if cell["status"] == "ok" else f"{cell['status']}: {cell['reason']}"


def row_labels(cells: list[dict]) -> list[str]:
    return list(dict.fromkeys(row_label(c) for c in cells))


def grid(cells: list[dict], value: Callable[[dict], float | None]) -> dict[str, list]:
    """{format: [value per row of `row_labels(cells)`]} over the ok cells."""
    rows = row_labels(cells)
    series: dict[str, list] = {}
    for cell in cells:
        if cell["status"] != "ok":
            continue
        series.setdefault(cell["format"], [None] * len(rows))
        series[cell["format"]][rows.index(row_label(cell))] = value(cell)
    return series


def scalar_measures(cell: dict) -> dict[str, Num | str | bool]:
    """Top-level numbers, flags and short texts of a cell; timing dicts give their median."""
    skip = {"cell_id", "experiment", "model", "size", "format", "variant", "status", "reason",
            "elapsed_s"}
    out: dict[str, Num | str | bool] = {}
    for key, value in cell.items():
        if key in skip or "samples" in key:
            continue
        unit = "s" if key.endswith("_s") else "B" if key.endswith("_bytes") else \
            "B/s" if key.endswith(("_bps", "_per_s")) else ""
        if isinstance(value, bool) or (isinstance(value, str) and len(value) <= 80):
            out[key] = value
        elif isinstance(value, dict) and "median" in value:
            out[key] = Num(value["median"], unit)
        elif isinstance(value, int | float):
            out[key] = Num(value, unit)
    return out


def generic_view(cells: list[dict], machine: dict) -> list[Block]:
    measures = [scalar_measures(c) for c in cells]
    keys = list(dict.fromkeys(k for m in measures for k in m))
    rows = [[c["model"], c["size"], c["format"], c.get("variant", ""), status(c),
             *[m.get(k) for k in keys]] for c, m in zip(cells, measures, strict=True)]
    return [Table("cells", ["model", "size", "format", "variant", "status", *keys], rows,
                  note="Timings are medians; hover a number for its exact value.")]


FIDELITY_COLUMNS = ["label agreement", "tied rows", "label agreement, untied rows",
                    "max |Δ probability|", "max |Δ prediction|", "max relative Δ prediction"]


def fidelity(cell: dict) -> list[Num]:
    """Classifiers: label agreement (all rows, and rows whose top two probabilities are not
    tied, where a label is no tie-break) and probability drift; regressors: value drift."""
    return [Num(cell.get("label_agreement"), "%"), Num(cell.get("tied_rows")),
            Num(cell.get("label_agreement_untied"), "%"), Num(cell.get("proba_max_abs_diff")),
            Num(cell.get("prediction_max_abs_diff")), Num(cell.get("prediction_max_rel_diff"))]


def _ok(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c["status"] == "ok"]
