"""Dump, warm load and cold load of every model × format of the profile.

Each test times one of the harness's quantities (`persistbench.experiments.quantities`, through
`persistbench.schedule.fronts`) under its protocol. The harness's sampler takes it first, with
the profile's stopping rule (quick: until the median's 95 % interval is within ±10 %, or a
quarter second of samples): `extra_info[key]` is that figure, the same as `persistbench run`'s,
with its samples and interval. pytest-benchmark's own timer, which has no such rule (its
`pedantic` takes a fixed number of rounds), then takes as many rounds as the rule needed:
the quantity's `run`, with the protocol's between-sample step as its setup and the
protocol's warm-ups as its warm-up rounds.
`extra_info` carries the protocol's name and the harness's measures of the same cell (file
size, per-phase peak RSS), taken in child processes by its runner. Each benchmark is grouped
by format.
"""

from __future__ import annotations

import pytest

from persistbench.measure.phases import cold_cache_supported, stats
from persistbench.results.precision import relative_halfwidth
from persistbench.schedule import fronts

GRID = fronts.grid()
CELLS = pytest.mark.parametrize(("model", "size", "fmt"), GRID.cells())
EXTRA = ("file_bytes", "dump_peak_rss_bytes", "load_peak_rss_bytes")


def _measure(benchmark, cell_records: dict, key: str, model: str, size: str, fmt: str) -> None:
    """Time the cell's quantity under its protocol, or skip with the library's message."""
    cell = (model, size, fmt)
    try:
        quantity = fronts.quantity(key, model, size, fmt)
        if cell not in cell_records:
            cell_records.update(fronts.records("roundtrip", [model], [size], [fmt],
                                               GRID.repeat))
        record = fronts.check_record(cell_records.get(cell))
    except fronts.NotMeasurable as exc:
        pytest.skip(str(exc))
    try:
        series = quantity.sample(GRID.repeat, GRID.budget_s, GRID.precision)
    except fronts.NotCold as exc:
        pytest.skip(str(exc))
    benchmark.group = fmt
    benchmark.extra_info.update({"model": model, "size": size, "format": fmt,
                                 "protocol": quantity.protocol.name,
                                 key: {**stats(series.samples),
                                       "halfwidth": relative_halfwidth(series.samples)},
                                 **{k: record[k] for k in EXTRA}})
    benchmark.pedantic(quantity.run, setup=quantity.between, rounds=len(series.samples),
                       warmup_rounds=quantity.protocol.warmups)


@CELLS
def test_dump(benchmark, cell_records: dict, model: str, size: str, fmt: str) -> None:
    _measure(benchmark, cell_records, "dump_s", model, size, fmt)


@CELLS
def test_load(benchmark, cell_records: dict, model: str, size: str, fmt: str) -> None:
    _measure(benchmark, cell_records, "load_s", model, size, fmt)


@CELLS
def test_load_cold(benchmark, cell_records: dict, model: str, size: str, fmt: str) -> None:
    if not cold_cache_supported():
        pytest.skip("no posix_fadvise here: the page cache cannot be evicted")
    _measure(benchmark, cell_records, "load_cold_s", model, size, fmt)
