"""Round trip: dump and load time (warm and cold cache), per-phase peak memory, file size,
and whether the loaded model predicts exactly what the original did.

Dump and load run in two different child processes, so the load's peak memory is not
flattered by allocator pages the dump left behind, and the loader never shares a process
with the original object.
"""

from __future__ import annotations

import gc
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persistbench.experiments import Cell, StepContext
from persistbench.experiments.serving import Server, modules_for_loading, save_input
from persistbench.measure.phases import Phase, evict_verified, measure_phase, stats
from persistbench.results.vocabulary import START_REPEATS
from persistbench.sources.formats import FORMATS, Format, predict, predict_only

NAME = "roundtrip"
DESCRIPTION = "dump/load time (warm, cold), per-phase peak RSS, file size, prediction equality"
DEFAULT_BUDGET_S = 30.0
EXPECTED = "expected.pkl"  # X_eval and the original's outputs, for the load step
START_ROW = "start_row"  # the one row a freshly started server predicts
SPLIT_STEPS = ("dump_step", "load_step")  # their samples are spread over the cell's workers


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    return [Cell(NAME, m, s, f, options=options) for m in models for s in sizes for f in formats]


def artefact(ctx: StepContext) -> Path:
    return ctx.workdir / f"model{FORMATS[ctx.cell.format].suffix}"


@dataclass
class Sampled:
    """A repeated phase: the first run (the warm-up, kept apart), the steady samples, and
    why there are fewer samples than asked for, if there are."""

    first: Phase
    samples: list[Phase]
    short_reason: str | None = None


def repeat_phase(run, repeat: int, budget_s: float, after_each=None) -> Sampled:
    """The first run is the warm-up, kept as its own measure (a process pays it once); then
    samples until `repeat` or the time budget is spent, with at least one sample.

    `after_each(value)` runs after every run while its value is alive (outside the timing),
    e.g. to time the first prediction of a model just loaded.
    """
    first: Phase | None = None
    samples: list[Phase] = []
    spent = 0.0
    while len(samples) < repeat and not (samples and spent > budget_s):
        phase = measure_phase(run)
        spent += phase.seconds
        if after_each:
            after_each(phase.value)
        phase.value = None
        gc.collect()
        if first is None:
            first = phase
        else:
            samples.append(phase)
    short = None
    if len(samples) < repeat:
        short = (f"{len(samples)} of {repeat} samples: the {budget_s:g} s time budget was "
                 f"spent (one run took {max(p.seconds for p in samples):.3g} s)")
    return Sampled(first, samples, short)


def _summary(prefix: str, samples: list[Phase], first: Phase | None = None,
             short_reason: str | None = None) -> dict:
    seconds = [p.seconds for p in samples]
    peaks = [p.peak_rss_bytes for p in samples]
    out = {
        f"{prefix}_s": stats(seconds),
        f"{prefix}_s_samples": seconds,
        f"{prefix}_peak_rss_bytes": int(np.median(peaks)) if peaks else 0,
        f"{prefix}_peak_rss_samples_bytes": peaks,
    }
    if first is not None:
        out.update({f"{prefix}_first_s": first.seconds,
                    f"{prefix}_first_peak_rss_bytes": first.peak_rss_bytes,
                    f"{prefix}_warmups": 1})
    if short_reason:
        out[f"{prefix}_s_short_reason"] = short_reason
    return out


def sampling(ctx: StepContext) -> tuple[int, float]:
    """This worker's samples and time budget: the cell's, shared among its workers."""
    repeat = int(ctx.cell.options.get("repeat", 5))
    budget = float(ctx.cell.options.get("budget_s", DEFAULT_BUDGET_S))
    return ctx.share(repeat), budget / ctx.workers


def dump_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    est, X_eval = ctx.load_model()
    repeat, budget = sampling(ctx)
    target = artefact(ctx)
    info: dict = {}
    counter = iter(range(1_000_000))

    def one_dump():
        path = ctx.workdir / f"dump{next(counter)}{fmt.suffix}"
        info.update(fmt.dump(est, path, X_eval))
        os.replace(path, target)

    ctx.start_measuring()
    sampled = repeat_phase(one_dump, repeat, budget)
    labels, proba = predict(FORMATS["pickle"], est, X_eval)
    expected = {"X": X_eval, "labels": labels} | ({"proba": proba} if proba is not None else {})
    with open(ctx.workdir / EXPECTED, "wb") as fh:
        pickle.dump(expected, fh, protocol=5)
    save_input(X_eval[:1], ctx.workdir / START_ROW)
    return {
        "start_modules": modules_for_loading(fmt.name, est),
        **_summary("dump", sampled.samples, sampled.first, sampled.short_reason),
        "file_bytes": os.path.getsize(target),
        "format_traits": fmt.traits(),
        **info,
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


def _first_predict_summary(prefix: str, phases: list[Phase]) -> dict:
    """First predictions after loads: time, and the RSS each left behind (lazy page-ins)."""
    return {f"{prefix}_s": stats([p.seconds for p in phases]),
            f"{prefix}_s_samples": [p.seconds for p in phases],
            f"{prefix}_rss_bytes": int(np.median([p.rss_delta_bytes for p in phases])),
            f"{prefix}_rss_samples_bytes": [p.rss_delta_bytes for p in phases]}


def warm_loads(fmt: Format, path: Path, prepared: dict, X_row, repeat: int,
               budget_s: float) -> dict:
    """Warm-cache loads, each followed by its first one-row `predict` (predict only).

    The process's first load is kept as `load_first_s`; the first prediction after each
    later load is `first_predict_s` with its RSS increase, where memory mapping and other
    lazy loading pay what the load deferred.
    """
    predicts: list[Phase] = []

    def first_predict(model):
        predicts.append(measure_phase(lambda: predict_only(fmt, model, X_row)))

    sampled = repeat_phase(lambda: fmt.load(path, prepared), repeat, budget_s,
                           after_each=first_predict)
    return {**_summary("load", sampled.samples, sampled.first, sampled.short_reason),
            "first_predict_after_first_load_s": predicts[0].seconds,
            **_first_predict_summary("first_predict", predicts[1:])}


def cold_loads(fmt: Format, path: Path, prepared: dict, X_row, repeat: int,
               budget_s: float) -> dict:
    """Loads from an evicted page cache, each checked to be cold before it runs.

    The warm loads before them warm the code path; the file itself is evicted and its
    residency read (mincore) before every sample. Where eviction does not work the cold
    measures are `unsupported` with the reason rather than a warm figure under a cold name.
    """
    fractions: list[float | None] = []
    cold: list[Phase] = []
    predicts: list[Phase] = []
    spent = 0.0
    while len(cold) < repeat and not (cold and spent > budget_s):
        fraction, why_not = evict_verified(path)
        fractions.append(fraction)
        if why_not:
            return {"load_cold_status": "unsupported", "load_cold_reason": why_not,
                    "load_cold_resident_fraction": fraction}
        phase = measure_phase(lambda: fmt.load(path, prepared))
        model = phase.value
        predicts.append(measure_phase(lambda: predict_only(fmt, model, X_row)))  # noqa: B023
        model = None
        spent += phase.seconds + predicts[-1].seconds
        phase.value = None
        gc.collect()
        cold.append(phase)
    known = [f for f in fractions if f is not None]
    short = (f"{len(cold)} of {repeat} samples: the {budget_s:g} s time budget was spent"
             if len(cold) < repeat else None)
    return {**_summary("load_cold", cold, short_reason=short),
            "load_cold_status": "ok",
            "load_cold_resident_fraction": max(known) if known else None,
            "load_cold_resident_fraction_samples": fractions,
            "load_cold_first_predict_s": stats([p.seconds for p in predicts])}


def load_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    path = artefact(ctx)
    repeat, budget = sampling(ctx)
    with open(ctx.workdir / EXPECTED, "rb") as fh:  # written by the dump step of this cell
        expected = pickle.load(fh)
    X_eval = expected["X"]
    prepared = fmt.prepare_load(path)

    ctx.start_measuring()
    out = {**prepared, **warm_loads(fmt, path, prepared, X_eval[:1], repeat, budget),
           **cold_loads(fmt, path, prepared, X_eval[:1], repeat, budget)}
    if ctx.worker:  # the outputs are the same in every worker: checked once
        return out
    loaded = fmt.load(path, prepared)
    start = time.perf_counter()
    labels, proba = predict(fmt, loaded, X_eval)
    out["predict_eval_s"] = time.perf_counter() - start
    out.update(compare_predictions(fmt, labels, proba, expected))
    return out


def start_step(ctx: StepContext) -> dict:
    """What a server pays at start: a new interpreter (not a fork of the preloaded
    forkserver) imports what loading the file needs, loads it and predicts one row.

    `start_import_s` is the imports alone, `start_load_s` the load alone (any module the
    file needs beyond `start_modules` would be imported here), `start_first_predict_s` the
    first `predict` alone; `start_total_s` is the parent's clock from spawning the
    interpreter to the answer, interpreter start-up included.
    """
    fmt = FORMATS[ctx.cell.format]
    row = next(ctx.workdir.glob(f"{START_ROW}.*"))
    modules = ctx.previous["start_modules"]
    repeats = int(ctx.cell.options.get("starts", START_REPEATS))
    if repeats < 1:
        return {"start_reason": "not measured: the run asked for no server starts"}
    ctx.start_measuring()
    starts = []
    for index in range(repeats):
        with Server(fmt.name, artefact(ctx), row, modules,
                    ctx.workdir / f"start{index}.stderr") as server:
            ready = server.wait_ready()
            starts.append({**server.serve(), "import_s": ready["import_s"]})
            server.proc.kill()  # measured; its interpreter teardown (~0.3 s) is not
    return {f"start_{key}": stats([s[key] for s in starts])
            for key in ("import_s", "load_s", "first_predict_s", "total_s")}


STEPS = (dump_step, load_step, start_step)
