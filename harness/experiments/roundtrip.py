"""Round trip: dump and load time (warm and cold cache), per-phase peak memory, file size,
and whether the loaded model predicts exactly what the original did.

Dump and load run in two different child processes, so the load's peak memory is not
flattered by allocator pages the dump left behind, and the loader never shares a process
with the original object.
"""

from __future__ import annotations

import functools
import os
import pickle
import time
from pathlib import Path
from statistics import median

import numpy as np

from persistbench.experiments import Cell, StepContext
from persistbench.experiments.quantities import (
    Dumps,
    NotCold,
    cold_load_quantity,
    load_quantity,
)
from persistbench.experiments.serving import modules_for_loading, save_input
from persistbench.experiments.starts import measure_starts
from persistbench.experiments.starts import summary as start_summary
from persistbench.measure.phases import Phase, rss_bytes, stats
from persistbench.measure.sampling import (
    Series,
    first_in_fork,
    floor,
    peak_samples,
    sample,
    timed,
)
from persistbench.results.protocols import (
    COLD_PAGE_CACHE,
    FIRST_PREDICT_AFTER_LOAD,
    MEASURE_PROTOCOLS,
    WARM_REPEATED,
)
from persistbench.results.vocabulary import START_REPEATS, cpu_key
from persistbench.sources.formats import FORMATS, Format, predict, predict_only

NAME = "roundtrip"
DESCRIPTION = "dump/load time (warm, cold), per-phase peak RSS, file size, prediction equality"
DEFAULT_BUDGET_S = 30.0
EXPECTED = "expected.pkl"  # X_eval and the original's outputs, for the load step
START_ROW = "start_row"  # the one row a freshly started server predicts
SPLIT_STEPS = ("dump_step", "load_step")  # their samples are spread over the cell's workers
# Sampled phases (dump, warm load, first predict, cold load): a run's shared sampling
# budget gives each an even part of the cell's share (`schedule.budget`).
TIMED_PHASES = 4


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    return [Cell(NAME, m, s, f, options=options) for m in models for s in sizes for f in formats]


def artefact_in(workdir: Path, fmt: str) -> Path:
    return workdir / f"model{FORMATS[fmt].suffix}"


def artefact(ctx: StepContext) -> Path:
    return artefact_in(ctx.workdir, ctx.cell.format)


MEMORY_SAMPLES = 3  # peaks move little between runs; each sample costs a collection and a trim


def timing(prefix: str, series: Series, floor_samples: list[float]) -> dict:
    """A timing under its protocol, with the floor of that protocol in the same process and
    the warm-up runs before its samples."""
    out = {f"{prefix}_s": {**stats(series.samples), "floor_s": median(floor_samples)},
           f"{prefix}_s_samples": series.samples,
           f"{prefix}_warmups": len(series.warmups)}
    if len(series.cpu) == len(series.samples):  # the control `compare` judges drift by
        twin = cpu_key(f"{prefix}_s")
        out[twin], out[f"{twin}_samples"] = stats(series.cpu), series.cpu
    if series.short_reason:
        out[f"{prefix}_s_short_reason"] = series.short_reason
    return out


def peaks(prefix: str, phases: list[Phase]) -> dict:
    found = [p.peak_rss_bytes for p in phases]
    return {f"{prefix}_peak_rss_bytes": int(np.median(found)) if found else 0,
            f"{prefix}_peak_rss_samples_bytes": found}


def first_run(prefix: str, phase: Phase) -> dict:
    """A worker's first run (`first-in-worker`, `sampling.first_in_fork`), with its peak:
    nothing ran before it in that worker, so there is nothing to collect or trim."""
    return {f"{prefix}_first_s": phase.seconds,
            f"{prefix}_first_peak_rss_bytes": phase.peak_rss_bytes}


def protocols(*keys: str) -> dict:
    """The `protocols` entry of the measures a step took: key -> protocol name."""
    return {"protocols": {k: MEASURE_PROTOCOLS[k] for k in keys}}


def sampling(ctx: StepContext) -> tuple[int, float, float | None]:
    """This worker's samples, time budget and precision: the cell's, shared among its
    workers (a precision holds for each worker's samples)."""
    repeat = int(ctx.cell.options.get("repeat", 5))
    budget = float(ctx.cell.options.get("budget_s", DEFAULT_BUDGET_S))
    precision = ctx.cell.options.get("precision")
    return ctx.share(repeat), budget / ctx.workers, precision


# BLAS/OpenMP threads of a cell's steps: one, as in the servers (`serving.THREAD_ENV`) and
# ONNX sessions (one intra-op thread), so every format predicts on the same footing. With
# scikit-learn's default (one OpenMP thread per core) on a loaded 2-core machine, a one-row
# HistGradientBoosting predict took 16-133 ms against 0.5-0.8 ms at one thread: the time
# went to waking the other thread, not to the model.
THREADS = 1


@functools.cache
def thread_pools():
    """The process's BLAS/OpenMP pools, found once (a scan of the loaded libraries: 11 ms;
    the forkserver's preload does it, so each cell's child inherits it)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def pinned(step):
    """The step at `THREADS` BLAS/OpenMP threads, which the cell records."""
    @functools.wraps(step)
    def run(ctx: StepContext) -> dict:
        with thread_pools().limit(limits=THREADS):
            return {**step(ctx), "threads": THREADS}

    return run


@pinned
def dump_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    est, X_eval = ctx.load_model()
    repeat, budget, precision = sampling(ctx)
    target = artefact(ctx)
    dumps = Dumps(fmt, est, X_eval, ctx.workdir)
    quantity = dumps.quantity()

    ctx.start_measuring()
    dumps.next_file()
    first = first_run("dump", first_in_fork(dumps.dump)[0])
    series = quantity.sample(repeat, budget, precision)  # its first `between` drops that file
    floor_samples = floor(WARM_REPEATED)
    memory = peak_samples(dumps.dump, MEMORY_SAMPLES, between=dumps.next_file,
                          budget_s=budget)
    os.replace(dumps.path, target)
    labels, proba = predict(FORMATS["pickle"], est, X_eval)
    expected = {"X": X_eval, "labels": labels} | ({"proba": proba} if proba is not None else {})
    with open(ctx.workdir / EXPECTED, "wb") as fh:
        pickle.dump(expected, fh, protocol=5)
    save_input(X_eval[:1], ctx.workdir / START_ROW)
    return {
        "start_modules": modules_for_loading(fmt.name, est),
        **first, **timing("dump", series, floor_samples), **peaks("dump", memory),
        **protocols("dump_s", "dump_cpu_s", "dump_first_s", "dump_first_peak_rss_bytes",
                    "dump_peak_rss_bytes"),
        "file_bytes": os.path.getsize(target),
        "format_traits": fmt.traits(),
        **dumps.info,
    }


TIE_ATOL = 1e-9  # top-two probabilities this close are a tie (float sums of equal votes)


def tied_rows_mask(proba: np.ndarray, atol: float = TIE_ATOL) -> np.ndarray:
    """Rows whose two highest class probabilities are equal: the label is a tie-break.

    A random forest's vote split evenly between two classes has no right answer; runtimes
    that break the tie differently disagree there without computing anything differently.
    """
    if proba.ndim != 2 or proba.shape[1] < 2:
        return np.zeros(len(proba), dtype=bool)
    top2 = np.sort(proba, axis=1)[:, -2:]
    return np.abs(top2[:, 1] - top2[:, 0]) <= atol


def tie_aware_agreement(agree: np.ndarray, proba: np.ndarray) -> dict:
    """`tied_rows` (of the original's probabilities) and agreement on the other rows."""
    tied = tied_rows_mask(proba)
    untied = ~tied
    return {"tied_rows": int(tied.sum()),
            "label_agreement_untied": float(np.mean(agree[untied])) if untied.any() else None}


def compare_predictions(fmt: Format, labels: np.ndarray, proba: np.ndarray | None,
                        expected: dict) -> dict:
    """Python formats must give identical outputs; ONNX is scored by agreement and drift.

    ONNX computes in float32, so for regression values "equal" means a relative difference
    within float32 rounding (1e-4) rather than bitwise equality.
    """
    want = expected["labels"]
    same_shape = labels.shape == want.shape
    out: dict = {}
    if want.dtype.kind == "f":
        diff = np.abs(labels.astype(np.float64) - want) if same_shape else np.array([np.inf])
        out["prediction_max_abs_diff"] = float(np.max(diff))
        out["prediction_max_rel_diff"] = float(np.max(diff / np.maximum(np.abs(want), 1e-12)))
        close = out["prediction_max_rel_diff"] <= 1e-4
    else:
        agree = labels == want if same_shape else np.zeros(len(want), dtype=bool)
        out["label_agreement"] = float(np.mean(agree))
        close = out["label_agreement"] == 1.0
        if expected.get("proba") is not None:
            out.update(tie_aware_agreement(agree, expected["proba"]))
    if proba is not None and "proba" in expected and proba.shape == expected["proba"].shape:
        out["proba_max_abs_diff"] = float(np.max(np.abs(proba - expected["proba"])))
    if fmt.needs_python_object:
        equal = same_shape and bool(np.array_equal(labels, want))
        if "proba" in expected:
            equal = equal and proba is not None and np.array_equal(proba, expected["proba"])
        out["roundtrip_equal"] = bool(equal)
    else:
        out["roundtrip_equal"] = bool(close)
    return out


def warm_loads(fmt: Format, path: Path, prepared: dict, X_row, repeat: int,
               budget_s: float, precision: float | None = None) -> dict:
    """A worker's first load and first prediction, then warm-repeated loads, first
    predictions after a load, and the loads' peak memory, each series under its own
    protocol.

    The first prediction after each load (`first_predict_s`, with the RSS it adds) is where
    memory mapping and other lazy loading pay what the load deferred; its samples load the
    file untimed, then time the prediction alone.
    """
    quantity = load_quantity(fmt, path, prepared)
    load = quantity.run
    phase, after_first = first_in_fork(load, lambda model: predict_only(fmt, model, X_row))
    floor_samples = floor(WARM_REPEATED)
    loads = quantity.sample(repeat, budget_s, precision)
    held: dict = {}
    rss: list[int] = []

    def load_untimed():
        held["model"] = load()
        held["rss"] = rss_bytes()

    def predict_held():
        return predict_only(fmt, held["model"], X_row)

    def after_predict(_):
        rss.append(rss_bytes() - held["rss"])
        held.clear()

    predicts = sample(FIRST_PREDICT_AFTER_LOAD, predict_held, repeat, budget_s,
                      between=load_untimed, after=after_predict, precision=precision)
    predict_floor = floor(FIRST_PREDICT_AFTER_LOAD)
    return {**first_run("load", phase), **timing("load", loads, floor_samples),
            **peaks("load", peak_samples(load, MEMORY_SAMPLES, budget_s=budget_s)),
            "first_predict_after_first_load_s": after_first,
            **timing("first_predict", predicts, predict_floor),
            "first_predict_rss_bytes": int(np.median(rss)),
            "first_predict_rss_samples_bytes": rss}


def cold_loads(fmt: Format, path: Path, prepared: dict, X_row, repeat: int,
               budget_s: float, precision: float | None = None) -> dict:
    """Loads from an evicted page cache, each checked to be cold before it runs.

    The warm loads before them warm the code path; the file itself is evicted and its
    residency read (mincore) before every sample. Where eviction does not work the cold
    measures are `unsupported` with the reason rather than a warm figure under a cold name.
    """
    fractions: list[float | None] = []
    predicts: list[float] = []
    quantity = cold_load_quantity(fmt, path, prepared, fractions)

    def first_predict(model):
        predicts.append(timed(lambda: predict_only(fmt, model, X_row))[0])

    try:
        cold = quantity.sample(repeat, budget_s, precision, after=first_predict)
        floor_samples = floor(COLD_PAGE_CACHE, between=quantity.between, n=3)
    except NotCold as exc:
        return {"load_cold_status": "unsupported", "load_cold_reason": str(exc),
                "load_cold_resident_fraction": fractions[-1]}
    known = [f for f in fractions if f is not None]
    return {**timing("load_cold", cold, floor_samples),
            "load_cold_status": "ok",
            "load_cold_resident_fraction": max(known) if known else None,
            "load_cold_resident_fraction_samples": fractions,
            "load_cold_first_predict_s": stats(predicts)}


@pinned
def load_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    path = artefact(ctx)
    repeat, budget, precision = sampling(ctx)
    with open(ctx.workdir / EXPECTED, "rb") as fh:  # written by the dump step of this cell
        expected = pickle.load(fh)
    X_eval = expected["X"]
    prepared = fmt.prepare_load(path)

    ctx.start_measuring()
    out = {**prepared,
           **warm_loads(fmt, path, prepared, X_eval[:1], repeat, budget, precision),
           **cold_loads(fmt, path, prepared, X_eval[:1], repeat, budget, precision),
           **protocols("load_s", "load_cpu_s", "load_first_s", "load_first_peak_rss_bytes",
                       "load_peak_rss_bytes", "first_predict_s", "first_predict_cpu_s",
                       "first_predict_after_first_load_s", "load_cold_s", "load_cold_cpu_s",
                       "load_cold_first_predict_s")}
    if int(ctx.cell.options.get("starts", START_REPEATS)) < 1:
        out["start_reason"] = "not measured: the run asked for no server starts"
    if ctx.worker:  # the outputs are the same in every worker: checked once
        return out
    loaded = fmt.load(path, prepared)
    start = time.perf_counter()
    labels, proba = predict(fmt, loaded, X_eval)
    out["predict_eval_s"] = time.perf_counter() - start
    out.update(compare_predictions(fmt, labels, proba, expected))
    return out


def start_entry(cell: Cell, workdir: Path, record: dict, keep: Path) -> dict | None:
    """What the server-start batch needs of a measured cell (its file and input row, moved
    out of the cell's folder, which the runner removes), or None when it takes no starts.

    Starts are measured for many cells at once (`persistbench.experiments.starts`): one new
    interpreter per start shares the imports the cells have in common.
    """
    if record["status"] != "ok" or "start_modules" not in record or \
            int(cell.options.get("starts", START_REPEATS)) < 1:
        return None
    dest = keep / cell.cell_id.replace("/", "_")
    dest.mkdir(parents=True)
    model = artefact_in(workdir, cell.format)
    row = next(workdir.glob(f"{START_ROW}.*"))
    os.replace(model, dest / model.name)
    os.replace(row, dest / row.name)
    return {"cell_id": cell.cell_id, "format": cell.format, "model": str(dest / model.name),
            "rows": str(dest / row.name), "modules": record["start_modules"],
            "bytes": (dest / model.name).stat().st_size}


def start_batch(entries: list[dict], workdir: Path, repeats: int,
                timeout_s: float) -> dict[str, dict]:
    """Cell id -> its `start_*` measures (what a server pays at start: a new interpreter
    imports what loading the file needs, loads it and predicts one row), or `error`.

    `start_import_s` is the imports alone, `start_load_s` the load alone (any module the
    file needs beyond `start_modules` would be imported here), `start_first_predict_s` the
    first `predict` alone; `start_total_s` is the parent's clock from spawning the
    interpreter to the answer, interpreter start-up included.
    """
    found = measure_starts(entries, workdir, repeats, timeout_s)
    out = {}
    for cell, starts in found.items():
        measures = start_summary(starts)
        if "error" not in measures:
            measures.update(protocols(*measures))
        out[cell] = measures
    return out


STEPS = (dump_step, load_step)
