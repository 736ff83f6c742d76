"""A page's charts drawn in parallel: matplotlib's SVG output is most of a report's time
(4 s of a quick run's page here, 23 charts), each chart is independent, and a report is
drawn after every measurement has ended, so it may use every core.

Forked workers inherit the views' drawing closures (which cannot be pickled) and return
the SVG text; each numbers its marks from its own range so ids stay unique in the page.
Where fork is not available, or a worker fails, the charts are drawn one by one as before.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os

from persistbench.report.blocks import Figure

_PENDING: list[Figure] = []
MARK_IDS_PER_CHART = 1_000_000


def _draw(index: int) -> str | None:
    from persistbench.report import charts

    charts.Marks._ids = itertools.count((index + 1) * MARK_IDS_PER_CHART)
    return _PENDING[index].draw()


def draw_all(figures: list[Figure]) -> None:
    """Fill each figure's `svg` (a cached property) using every core."""
    processes = min(os.cpu_count() or 1, len(figures))
    if processes < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return
    _PENDING[:] = figures
    try:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            svgs = pool.map(_draw, range(len(figures)), chunksize=1)
    except Exception:  # drawn one by one instead, where the error shows
        return
    finally:
        _PENDING.clear()
    for figure, svg in zip(figures, svgs, strict=True):
        figure.__dict__["svg"] = svg
