"""asv suites: how long persisting a scikit-learn model takes, and what it costs in memory.

A thin front over the harness (`persistbench.schedule.fronts`): `Quantities` stores `dump_s`,
`load_s` and `load_cold_s` taken by the harness's own sampler under its named protocols
(`persistbench.results.protocols`), so they read as the report's do; `RoundTrip` times the
same calls with asv's own loop (the `hot-loop` protocol) and the predictions are asv's too;
the per-phase peak RSS, file size and shared PSS are the harness's cell measures, taken in
child processes by its runner. asv's `peakmem_`
is not used: it reports the whole process's lifetime peak (imports included), not a phase's.

Fitted models come from the harness's model cache, never from asv's `setup_cache`, which
pickles its return value (that would be a pickle inside a pickle benchmark). `setup_cache`
only carries the runner's cell records, which are plain numbers.

The grid is fixed (every model at `small`, every format: `fronts.ASV_PROFILE`), so asv's
history never mixes grids; `version` changes with the model and format definitions, so a
changed zoo model starts a new series instead of continuing an incomparable one. A combination a
format cannot do (it refuses the model, or cannot load back what it wrote) raises
NotImplementedError in `setup`, which asv reports as skipped, with the library's message.
"""

from __future__ import annotations

import statistics
from pathlib import Path

# The harness's forkserver preload: asv's forkserver (asv.conf.json) imports this module
# once, so each benchmark starts as a fork with scikit-learn, skops, skl2onnx and
# onnxruntime already imported instead of paying seconds of imports per parameter set.
import persistbench.schedule.preload  # noqa: F401
from persistbench.experiments import experiment
from persistbench.measure.phases import cold_cache_supported
from persistbench.schedule import fronts
from persistbench.sources.formats import FORMATS, predict

GRID = fronts.grid(fronts.ASV_PROFILE)
version = fronts.definitions_version(GRID, Path(__file__).read_text())
CELL_PARAMS = (GRID.models, GRID.sizes, GRID.formats)
CELL_PARAM_NAMES = ("model", "size", "format")
# asv's timeout for one setup_cache: every cell of the grid is measured inside it.
CACHE_TIMEOUT_S = 1800


def _skip(exc: fronts.NotMeasurable) -> NotImplementedError:
    return NotImplementedError(str(exc))


class RoundTrip:
    """Dump and load timed by asv's own loop: the `hot-loop` protocol (collector off during
    the call, this class's `setup` re-run before each call). Kept for asv's statistics and
    history; `Quantities` has the figures the report shows, under the harness's protocols."""

    params = CELL_PARAMS
    param_names = CELL_PARAM_NAMES
    timeout = 600

    def setup(self, model: str, size: str, fmt: str) -> None:
        try:
            self.path, self.prepared = fronts.dumped(model, size, fmt)
        except fronts.NotMeasurable as exc:
            raise _skip(exc) from exc
        self.est, self.X = fronts.fitted(model, size)
        self.format = FORMATS[fmt]
        self.target = fronts.fresh_path(fmt)

    def time_dump(self, model: str, size: str, fmt: str) -> None:
        self.format.dump(self.est, self.target, self.X)

    def time_load(self, model: str, size: str, fmt: str) -> None:
        self.format.load(self.path, self.prepared)


class Quantities:
    """`dump_s`, `load_s` and `load_cold_s` exactly as `persistbench run` takes them: the
    same quantity (`persistbench.experiments.quantities`), the same protocol (warm-repeated,
    cold-page-cache), the same sampler with the profile's stopping rule (quick: until the
    median's 95 % interval is within ±10 %, or a quarter second of samples); asv stores each
    one's median."""

    params = CELL_PARAMS
    param_names = CELL_PARAM_NAMES
    timeout = 600

    def setup(self, model: str, size: str, fmt: str) -> None:
        try:
            fronts.dumped(model, size, fmt)
        except fronts.NotMeasurable as exc:
            raise _skip(exc) from exc

    def _measured(self, key: str, model: str, size: str, fmt: str) -> float:
        try:
            series = fronts.sampled(key, model, size, fmt, GRID)
        except fronts.NotMeasurable as exc:
            raise _skip(exc) from exc
        return statistics.median(series.samples)

    def track_dump_s(self, model: str, size: str, fmt: str) -> float:
        return self._measured("dump_s", model, size, fmt)

    track_dump_s.unit = "seconds"

    def track_load_s(self, model: str, size: str, fmt: str) -> float:
        return self._measured("load_s", model, size, fmt)

    track_load_s.unit = "seconds"

    def track_load_cold_s(self, model: str, size: str, fmt: str) -> float:
        if not cold_cache_supported():
            raise NotImplementedError("no posix_fadvise here: the page cache cannot be evicted")
        return self._measured("load_cold_s", model, size, fmt)

    track_load_cold_s.unit = "seconds"


class _CellRecord:
    """Picks this parameter set's record out of the runner's records (skips what failed).

    Each subclass defines its own `setup_cache`: asv keys the cache by where that function
    is written, so an inherited one would be shared between experiments.
    """

    param_names = CELL_PARAM_NAMES
    timeout = 60

    def setup(self, records: dict, model: str, size: str, fmt: str) -> None:
        try:
            self.record = fronts.check_record(records.get((model, size, fmt)))
        except fronts.NotMeasurable as exc:
            raise _skip(exc) from exc


class PhaseMemory(_CellRecord):
    """The harness's roundtrip cell: file size and per-phase peak RSS, from child processes."""

    params = CELL_PARAMS

    def setup_cache(self) -> dict:
        return fronts.records("roundtrip", GRID.models, GRID.sizes, GRID.formats, GRID.repeat)

    setup_cache.timeout = CACHE_TIMEOUT_S

    def track_file_size(self, records: dict, model: str, size: str, fmt: str) -> int:
        return self.record["file_bytes"]

    track_file_size.unit = "bytes"

    def track_dump_peak_rss(self, records: dict, model: str, size: str, fmt: str) -> int:
        return self.record["dump_peak_rss_bytes"]

    track_dump_peak_rss.unit = "bytes"

    def track_load_peak_rss(self, records: dict, model: str, size: str, fmt: str) -> int:
        return self.record["load_peak_rss_bytes"]

    track_load_peak_rss.unit = "bytes"


class _Predict:
    params = (GRID.models, GRID.sizes, list(fronts.BATCH_SIZES))
    param_names = ("model", "size", "batch")
    timeout = 300

    def setup(self, model: str, size: str, batch: int) -> None:
        fronts.single_thread()
        est, X_eval = fronts.fitted(model, size)
        self.X = fronts.rows(X_eval, batch)
        self.predictor, self.format = self.predictor_of(model, size, est)

    def predict(self) -> None:
        predict(self.format, self.predictor, self.X)


class PredictSklearn(_Predict):
    """scikit-learn's own predict (and predict_proba) on a batch, one thread."""

    def predictor_of(self, model: str, size: str, est):
        return est, FORMATS["pickle"]

    def time_predict_sklearn(self, model: str, size: str, batch: int) -> None:
        self.predict()


class PredictOnnx(_Predict):
    """The same batch through ONNX Runtime (one intra-op thread), from the harness's file."""

    def predictor_of(self, model: str, size: str, est):
        try:
            path, prepared = fronts.dumped(model, size, "onnx")
        except fronts.NotMeasurable as exc:
            raise _skip(exc) from exc
        return FORMATS["onnx"].load(path, prepared), FORMATS["onnx"]

    def time_predict_onnx(self, model: str, size: str, batch: int) -> None:
        self.predict()


_SHARING_FORMATS = [f for f in experiment("sharing").SHARING_FORMATS if f in GRID.formats]


class SharedMemory(_CellRecord):
    """Total PSS of the sharing experiment's serving processes (mmap or not)."""

    params = (GRID.models, GRID.sizes, _SHARING_FORMATS)

    def setup_cache(self) -> dict:
        return fronts.records("sharing", GRID.models, GRID.sizes, _SHARING_FORMATS,
                              GRID.repeat)

    setup_cache.timeout = CACHE_TIMEOUT_S

    def track_shared_pss(self, records: dict, model: str, size: str, fmt: str) -> int:
        return self.record["total_pss_bytes"]

    track_shared_pss.unit = "bytes"
