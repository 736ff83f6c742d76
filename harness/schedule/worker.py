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
from persistbench.measure.sampling import spent_in_process
from persistbench.results.schema import write_atomic
from persistbench.schedule.children import run_child
from persistbench.schedule.confine import LOAD, PROGRAMS, Limits, confine, writable_paths
from persistbench.sources.formats import Unsupported, describe_exception


def _failure(status: str, exc: BaseException) -> dict:
    return {
        "status": status,
        "reason": describe_exception(exc),
        "traceback": traceback.format_exc(limit=8)[-4000:],
    }


def _confined_spec(model: str):
    """The model's spec when it is a user's model file to be loaded confined, else None."""
    from persistbench.sources.models import CUSTOM_SIZE, MODEL_FILE_PREFIX, MODEL_FILE_TAG
    from persistbench.sources.resolve import resolve_spec

    if not model.startswith(MODEL_FILE_PREFIX):
        return None
    spec = resolve_spec(model)
    confined = spec.params.get(CUSTOM_SIZE, {}).get("confined", True)
    return spec if MODEL_FILE_TAG in spec.tags and confined else None


def _count_cores_now() -> None:
    """Before confinement: loky counts physical cores by running `lscpu`, and scikit-learn
    sizes its OpenMP pools by that count; counted (and cached) here, a confined cell uses
    the threads an unconfined one would."""
    from joblib import cpu_count

    cpu_count(only_physical_cores=True)


def _confine_step(cell: Cell, workdir: str, result_path: str) -> None:
    """A cell on a user's model file measures a model loaded from that file: its steps run
    confined too (they may start the harness's interpreter, confined the same way, for
    servers), writing only in the cell's folders, shared memory and its own peak-memory
    reset (`/proc/self/clear_refs`)."""
    if cell.needs_model and _confined_spec(cell.model) is not None:
        _count_cores_now()
        import os
        import tempfile

        os.environ["TMPDIR"] = workdir  # temporary files too, here and in servers started
        tempfile.tempdir = None
        confine(Limits(writable_paths(workdir, Path(result_path).parent, "/dev/shm",
                                      "/proc/self/clear_refs"), mode=PROGRAMS))


def run_step(cell: Cell, step_index: int, workdir: str, previous: dict, cell_started: float,
             worker: tuple[int, int], result_path: str) -> None:
    """Child entry point: run one step (as worker i of n) and leave its outcome in
    `result_path`."""
    import persistbench.schedule.preload  # noqa: F401  (a spawned child's imports, before it counts time)

    entered = time.monotonic()
    cap_address_space()
    _confine_step(cell, workdir, result_path)
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
    outcome["sampling_s"] = spent_in_process()
    write_atomic(Path(result_path), outcome)


def trained(path: Path, train_s: float | None) -> dict:
    """`train`'s outcome for a model in the cache (`train_s` None: it was there before)."""
    return {"status": "ok", "cache": str(path), "was_cached": train_s is None,
            "train_s": train_s, "cache_bytes": path.stat().st_size}


def already_cached(model: str, size: str, seed: int) -> dict | None:
    """`train`'s outcome for a zoo model already in the cache, found without a child (a
    child per model only to find its file cost 0.3-0.5 s of a quick run); None otherwise."""
    from persistbench.sources.models import MODELS, cache_path

    spec = MODELS.get(model)
    path = cache_path(spec, size, seed) if spec is not None and spec.info is None else None
    return trained(path, None) if path is not None and path.exists() else None


def train(model: str, size: str, seed: int, result_path: str) -> None:
    """Child entry point: fit a model into the cache (never in a measuring process)."""
    import persistbench.schedule.preload  # noqa: F401
    from persistbench.sources.models import cache_path, train_into_cache
    from persistbench.sources.resolve import resolve_spec

    start = time.perf_counter()
    try:
        spec = resolve_spec(model)
        cached = cache_path(spec, size, seed).exists()
        if not cached and _confined_spec(model) is not None:
            folder = cache_path(spec, size, seed).parent
            folder.mkdir(parents=True, exist_ok=True)
            _count_cores_now()
            confine(Limits(writable_paths(folder, Path(result_path).parent), mode=LOAD,
                           refuse_quietly=True))
        path = train_into_cache(spec, size, seed)
        outcome = trained(path, None if cached else time.perf_counter() - start)
        if spec.info:
            outcome["model_info"] = spec.info(size, seed)
    except Exception as exc:
        outcome = _failure("error", exc)
    write_atomic(Path(result_path), outcome)
