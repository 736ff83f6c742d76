"""Dump, warm load and cold load of every model × format of the profile.

pytest-benchmark times the format registry's own `dump` and `load`; `extra_info` carries
the harness's measures of the same cell (file size, per-phase peak RSS), taken in child
processes by its runner. Each benchmark is grouped by format.
"""

from __future__ import annotations

import pytest

from persistbench.measure.phases import cold_cache_supported, evict_from_page_cache
from persistbench.schedule import fronts
from persistbench.sources.formats import FORMATS

GRID = fronts.grid()
CELLS = pytest.mark.parametrize(("model", "size", "fmt"), GRID.cells())
EXTRA = ("file_bytes", "dump_peak_rss_bytes", "load_peak_rss_bytes")


def _prepare(benchmark, cell_records: dict, model: str, size: str, fmt: str):
    """The dumped file of the cell, or a skip with the library's message."""
    key = (model, size, fmt)
    try:
        path, prepared = fronts.dumped(model, size, fmt)
        if key not in cell_records:
            cell_records.update(fronts.records("roundtrip", [model], [size], [fmt],
                                               GRID.repeat))
        record = fronts.check_record(cell_records.get(key))
    except fronts.NotMeasurable as exc:
        pytest.skip(str(exc))
    benchmark.group = fmt
    benchmark.extra_info.update({"model": model, "size": size, "format": fmt,
                                 **{k: record[k] for k in EXTRA}})
    return path, prepared


@CELLS
def test_dump(benchmark, cell_records: dict, model: str, size: str, fmt: str) -> None:
    _prepare(benchmark, cell_records, model, size, fmt)
    est, X_eval = fronts.fitted(model, size)

    def fresh_file():
        return (est, fronts.fresh_path(fmt), X_eval), {}

    benchmark.pedantic(FORMATS[fmt].dump, setup=fresh_file, rounds=GRID.repeat,
                       warmup_rounds=1)


@CELLS
def test_load(benchmark, cell_records: dict, model: str, size: str, fmt: str) -> None:
    path, prepared = _prepare(benchmark, cell_records, model, size, fmt)
    benchmark.pedantic(FORMATS[fmt].load, args=(path, prepared), rounds=GRID.repeat,
                       warmup_rounds=1)


@CELLS
def test_load_cold(benchmark, cell_records: dict, model: str, size: str, fmt: str) -> None:
    if not cold_cache_supported():
        pytest.skip("no posix_fadvise here: the page cache cannot be evicted")
    path, prepared = _prepare(benchmark, cell_records, model, size, fmt)

    def evicted():
        evict_from_page_cache(path)
        return (path, prepared), {}

    benchmark.pedantic(FORMATS[fmt].load, setup=evicted, rounds=GRID.repeat)
