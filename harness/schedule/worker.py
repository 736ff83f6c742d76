"""What runs inside a child process: one step of one cell, or the training of one model.

Light to import, so the harness's process can name these functions as a child's target;
the libraries they use come from `persistbench.schedule.preload`, which the forkserver imports once
(a spawned child imports it on entry). Results go back through a small JSON file that is
written atomically, so a child that dies leaves either nothing or a complete answer.
"""

from __future__ import annotations

import time
import traceback
import warnings
from pathlib import Path

from persistbench.experiments import Cell, StepContext, experiment
from persistbench.measure.phases import cap_address_space
from persistbench.results.schema import write_atomic
from persistbench.schedule.children import run_child
from persistbench.sources.formats import Unsupported, describe_exception


def _failure(status: str, exc: BaseException) -> dict:
    return {
        "status": status,
        "reason": describe_exception(exc),
        "traceback": traceback.format_exc(limit=8)[-4000:],
    }


def run_step(cell: Cell, step_index: int, workdir: str, previous: dict, cell_started: float,
             worker: tuple[int, int], result_path: str) -> None:
    """Child entry point: run one step (as worker i of n) and leave its outcome in
    `result_path`."""
    import persistbench.schedule.preload  # noqa: F401  (a spawned child's imports, before it counts time)

    entered = time.monotonic()
    cap_address_space()
    ctx = StepContext(cell=cell, workdir=Path(workdir), previous=previous,
                      cell_started=cell_started, worker=worker[0], workers=worker[1],
                      run_child=run_child)
    step = experiment(cell.experiment).STEPS[step_index]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            measures = step(ctx)
        outcome = {"status": "ok", "measures": measures}
        if caught:
            outcome["warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:300]
                                          for w in caught})
    except Unsupported as exc:
        outcome = {"status": "unsupported", "reason": str(exc)}
    except Exception as exc:
        outcome = _failure("error", exc)
    outcome["entered_monotonic"] = entered
    outcome["first_measurement_monotonic"] = ctx.first_measurement
    write_atomic(Path(result_path), outcome)


def train(model: str, size: str, seed: int, result_path: str) -> None:
    """Child entry point: fit a model into the cache (never in a measuring process)."""
    import persistbench.schedule.preload  # noqa: F401
    from persistbench.sources.models import cache_path, train_into_cache
    from persistbench.sources.resolve import resolve_spec

    start = time.perf_counter()
    try:
        spec = resolve_spec(model)
        cached = cache_path(spec, size, seed).exists()
        path = train_into_cache(spec, size, seed)
        outcome = {"status": "ok", "cache": str(path), "was_cached": cached,
                   "train_s": None if cached else time.perf_counter() - start,
                   "cache_bytes": path.stat().st_size}
        if spec.info:
            outcome["model_info"] = spec.info(size, seed)
    except Exception as exc:
        outcome = _failure("error", exc)
    write_atomic(Path(result_path), outcome)
