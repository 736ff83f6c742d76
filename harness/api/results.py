"""The results object the Python API returns: one or more results files, read back.

It holds paths, not a copy of the measurements: the file on disk stays the record (written
atomically by the runner, complete after an interrupt), and every view reads it through the
same code as the command line, so the notebook shows what `persistbench report` would.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from persistbench.report.data import MachineResults, load
from persistbench.sources.models import UsageError

if TYPE_CHECKING:
    import pandas

    from persistbench.report.compare import Comparison


class Results:
    """Measurements read from results files: show the verdict, tabulate, report, compare.

    In a notebook the object displays as the verdict table the HTML report opens with.
    """

    def __init__(self, paths: Iterable[str | Path]):
        self.paths: list[Path] = [Path(p) for p in paths]
        if not self.paths:
            raise UsageError("no results file given")
        self.machines: list[MachineResults] = load(self.paths)

    @property
    def cells(self) -> list[dict]:
        """Every cell of every machine (a re-measured cell once: the newest run wins)."""
        return [cell for mr in self.machines for cell in mr.cells]

    def __repr__(self) -> str:
        failed = sum(len(mr.failed()) for mr in self.machines)
        files = ", ".join(str(p) for p in self.paths)
        return f"<persistbench Results: {len(self.cells)} cells, {failed} not ok, from {files}>"

    def _repr_html_(self) -> str | None:
        """The verdict table, per machine; None (plain repr) without the report extra."""
        from persistbench.sources.extras import missing

        if missing("report"):
            return None
        from persistbench.report.html import verdict_fragment

        return "".join(
            (f"<p><b>{mr.machine_id}</b></p>" if len(self.machines) > 1 else "")
            + verdict_fragment(mr.cells) for mr in self.machines)

    def to_pandas(self) -> pandas.DataFrame:
        """A tidy table: one row per cell and measure.

        Columns: model, size, format, experiment, measure (the key in the results file, nested
        ones dotted), protocol (how it was taken: `persistbench.results.protocols`), unit
        (s, B, B/s, 1/s, or empty for a score), median (the value the results file holds),
        interval (the samples' min and max as a closed `pandas.Interval`, None for a single
        value), n (samples behind the median), status, then variant, reason and machine. A cell
        that measured nothing keeps one row with an empty measure, so its status shows.
        """
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_pandas needs pandas; pip install 'persistbench[data]'"
                             ) from None
        from persistbench.report.tidy import COLUMNS, tidy_rows

        rows = [row for mr in self.machines for row in tidy_rows(mr.cells, mr.machine_id)]
        for row in rows:
            if row["interval"] is not None:
                row["interval"] = pd.Interval(*row["interval"], closed="both")
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def report(self, path: str | Path = "reports") -> Path:
        """Write the HTML report of these files into folder `path`; the page (first machine).

        The same pages as `persistbench report FILE... --only --output path`.
        """
        from persistbench.schedule.planning import writable_dir
        from persistbench.sources.extras import missing

        problem = missing("report")
        if problem:
            raise UsageError(f"the HTML report needs {problem}")
        from persistbench.report.html import write_reports

        writable_dir(Path(path), "report folder")
        return write_reports(self.paths, Path(path))[0]

    def compare(self, other: Results, *, threshold: float = 10.0,
                memory_threshold: float = 5.0, alpha: float = 0.05, absolute: bool = False,
                show_all: bool = False) -> Comparison:
        """B/A per cell and measure, this object being A: what `persistbench compare A B`
        prints (printed here too), returned as a `Comparison` (`.rows`, `.flagged()`,
        `.regressions(pct)`). Each side must be one results file."""
        from persistbench.report.compare import compare
        from persistbench.report.compare_output import print_comparisons
        from persistbench.results.schema import read

        if not isinstance(other, Results):
            raise UsageError(f"compare takes another Results, not a {type(other).__name__}; "
                             "read a file with persistbench.read_results(path)")
        for side in (self, other):
            if len(side.paths) != 1:
                raise UsageError(f"compare needs one results file a side; this side has "
                                 f"{len(side.paths)}: read them one at a time")
        (a_path,), (b_path,) = self.paths, other.paths
        comparison = compare(read(a_path), read(b_path), str(a_path), str(b_path), threshold,
                             memory_threshold, alpha, drift=not absolute)
        print_comparisons([comparison], show_all=show_all)
        return comparison


def read_results(path_or_paths: str | Path | Iterable[str | Path]) -> Results:
    """Read one results file, or several (a list), into a `Results`.

    Accepts what `persistbench report` accepts: persistbench results files, pytest-benchmark
    JSON files and asv results folders. Raises `ValueError` with one line when a file is
    missing or not valid results.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, str | Path) else list(path_or_paths)
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"{path}: no such results file")
    return Results(paths)
