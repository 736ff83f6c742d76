"""Inference: ONNX Runtime against scikit-learn on the same float32 rows.

Per convertible model: conversion time, file size, session creation time, then latency of
`predict` (and `predict_proba`) at batch sizes 1 … 10,000 for both runtimes, with one
thread each (BLAS/OpenMP limited by threadpoolctl, onnxruntime's intra-op pool set), so
the comparison neither depends on nor fights over the machine's cores. Fidelity is scored
on rows the model never saw. A model skl2onnx cannot convert is `unsupported` with the
converter's own message; one onnxruntime then fails on is an `error` with the runtime's.
The steps run in the order of the memory they may need, so a batch too big for the machine
costs only itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from persistbench.experiments import Cell, StepContext
from persistbench.experiments.roundtrip import compare_predictions
from persistbench.sources.formats import (
    FORMATS,
    Unsupported,
    convert_to_onnx,
    describe_exception,
    onnx_input,
    onnx_session,
    predict,
)

NAME = "inference"
DESCRIPTION = "ONNX Runtime vs scikit-learn: conversion, session, latency per batch, fidelity"
BATCH_SIZES = (1, 10, 100, 1_000, 10_000)
SMALL_BATCHES, LARGE_BATCHES = BATCH_SIZES[:3], BATCH_SIZES[3:]
THREADS = 1
SERIES_BUDGET_S = 1.0  # per (runtime, method, batch): stop sampling after this much time
SERIES_MAX_N = 100
MIN_SAMPLES = 5  # after the warm-up, unless the cell's time budget cannot afford them
SMALL_BATCHES_BUDGET_S = 30.0  # batches 1 to 100 of one cell share this
LARGE_BATCHES_BUDGET_S = 40.0  # batches 1,000 and 10,000 of one cell share this
SESSION_REPEATS = 3
FIDELITY_ROWS = 2_000  # enough for agreement to 0.1 %; the big batches are timed anyway
FIDELITY_CHUNK = 500
ONNX_FILE = "model.onnx"


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    if "onnx" not in formats:
        return []
    return [Cell(NAME, m, s, "onnx", options=options) for m in models for s in sizes]


def heldout_rows(X_eval: Any, n: int, seed: int = 0) -> Any:
    """`n` rows the model never saw, with the evaluation rows' value distribution.

    Numeric: each feature drawn independently from its column in X_eval (float32, the
    dtype both runtimes get). Text: documents of the same lengths made of words drawn from
    X_eval's words. The zoo hands out training rows only, so this is the held-out set.
    The first k of n rows are the k rows asked for alone, so each step builds only the rows
    it needs (10,000 rows of a wide model take a minute and gigabytes) and all see the same.
    """
    rng = np.random.default_rng(seed)
    if isinstance(X_eval, list | tuple):
        words = np.array(" ".join(X_eval).split())
        length_rng, word_rng = (np.random.default_rng(s)
                                for s in np.random.SeedSequence(seed).spawn(2))
        lengths = length_rng.choice([len(doc.split()) for doc in X_eval], size=n)
        drawn = word_rng.choice(words, size=int(lengths.sum()))
        ends = np.cumsum(lengths)
        return [" ".join(drawn[end - k:end]) for k, end in zip(lengths, ends, strict=True)]
    X = onnx_input(X_eval)
    picks = rng.integers(0, X.shape[0], size=(n, X.shape[1]))
    return X[picks, np.arange(X.shape[1])]


@dataclass
class Series:
    """Repeated calls of one entry: the warm-up apart, the samples, and why they are few."""

    samples: list[float]
    warmup_s: float
    short_reason: str | None = None


def time_series(call: Callable[[], Any], budget_s: float = SERIES_BUDGET_S,
                max_n: int = SERIES_MAX_N, hard_budget_s: float = math.inf) -> Series:
    """One warm-up, then samples until `max_n`, or `budget_s` spent once there are at
    least MIN_SAMPLES of them. `hard_budget_s` (warm-up included) is what the cell can
    afford for this entry: a call that would overrun it is not started once one sample
    exists, and the entry says so, instead of a slow call getting one unwarmed sample.
    """
    if hard_budget_s <= 0:  # the cell's budget is spent: one call, so no batch is dropped
        start = time.perf_counter()
        call()
        return Series([time.perf_counter() - start], 0.0,
                      "1 sample, no warm-up: the cell's time budget was spent before this entry")
    start = time.perf_counter()
    call()
    warmup = time.perf_counter() - start
    samples: list[float] = []
    spent = warmup
    while len(samples) < max_n and not (len(samples) >= MIN_SAMPLES
                                        and spent - warmup > budget_s):
        last = samples[-1] if samples else warmup
        if samples and spent + last > hard_budget_s:
            return Series(samples, warmup, f"{len(samples)} of {MIN_SAMPLES} samples: one "
                          f"call takes {last:.3g} s and the cell's time budget left "
                          f"{hard_budget_s:.3g} s for this entry")
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
        spent += samples[-1]
    return Series(samples, warmup)


def latency_entry(runtime: str, method: str, batch_size: int, series: Series) -> dict:
    samples = series.samples
    median = float(np.median(samples))
    entry = {"runtime": runtime, "method": method, "batch_size": batch_size,
             "median_s": median, "p90_s": float(np.percentile(samples, 90)),
             "min_s": min(samples), "max_s": max(samples), "n": len(samples),
             "rows_per_s": batch_size / median if median > 0 else None, "samples_s": samples,
             "warmup_s": series.warmup_s}
    if series.short_reason:
        entry["short_reason"] = series.short_reason
    return entry


def calls(est: Any, session: Any, method: str, X_sk: Any, X_ox: np.ndarray
          ) -> dict[str, Callable[[], Any]]:
    """The same method in both runtimes: onnxruntime is asked only for the output it needs."""
    feed = {session.get_inputs()[0].name: X_ox}
    outputs = [o.name for o in session.get_outputs()]
    wanted = outputs[0] if method == "predict" else outputs[1]
    return {"sklearn": lambda: getattr(est, method)(X_sk),
            "onnxruntime": lambda: session.run([wanted], feed)}


def latency(est: Any, session: Any, X: Any, batch_sizes=BATCH_SIZES,
            budget_s: float = SERIES_BUDGET_S, max_n: int = SERIES_MAX_N,
            step_budget_s: float = math.inf) -> list[dict]:
    """One entry per runtime, method and batch size; batches are the first rows of X.

    `step_budget_s` is shared by the entries: each may use what is left divided by the
    entries still to come, so a fast entry leaves time to a slow one and no batch is dropped.
    """
    methods = ["predict"]
    if hasattr(est, "predict_proba") and len(session.get_outputs()) > 1:
        methods.append("predict_proba")
    for batch in batch_sizes:
        if batch > len(X):
            raise ValueError(f"batch size {batch} needs {batch} rows, X has {len(X)}")
    entries = []
    todo = len(batch_sizes) * len(methods) * 2
    started = time.perf_counter()
    for batch in batch_sizes:
        X_sk = X[:batch]
        X_ox = onnx_input(X_sk)
        for method in methods:
            for runtime, call in calls(est, session, method, X_sk, X_ox).items():
                share = (step_budget_s - (time.perf_counter() - started)) / todo
                entries.append(latency_entry(runtime, method, batch,
                                             time_series(call, budget_s, max_n, share)))
                todo -= 1
    return entries


def fidelity(expected: tuple, got: tuple) -> dict:
    """Label agreement and probability drift (classifiers) or value drift (regressors).

    The roundtrip's ONNX scoring, minus its equality verdict; measures a model does not
    have are None, so every cell carries the same keys.
    """
    (want_labels, want_proba), (labels, proba) = expected, got
    reference = {"labels": np.asarray(want_labels)}
    if want_proba is not None:
        reference["proba"] = want_proba
    out = compare_predictions(FORMATS["onnx"], np.asarray(labels), proba, reference)
    out.pop("roundtrip_equal")
    for key in ("label_agreement", "proba_max_abs_diff", "tied_rows", "label_agreement_untied"):
        out.setdefault(key, None)
    return out


def threads_used() -> dict:
    from threadpoolctl import threadpool_info

    limits = {"blas": None, "openmp": None}
    for pool in threadpool_info():
        limits[pool["user_api"]] = pool["num_threads"]
    return {"onnxruntime_intra_op": THREADS, **limits}


def convert_step(ctx: StepContext) -> dict:
    est, X_eval = ctx.load_model()
    ctx.start_measuring()
    start = time.perf_counter()
    try:
        model = convert_to_onnx(est, X_eval)
    except Exception as exc:  # the converter's verdict on this model is the finding
        raise Unsupported(describe_exception(exc)) from exc
    convert_s = time.perf_counter() - start
    data = model.SerializeToString()
    (ctx.workdir / ONNX_FILE).write_bytes(data)
    return {"convert_s": convert_s, "onnx_file_bytes": len(data),
            "onnx_opsets": {d.domain or "ai.onnx": d.version for d in model.opset_import}}


def _rows(ctx: StepContext, n: int) -> tuple[Any, Any]:
    """The model (from the cache, not measured) and the first n held-out rows."""
    est, X_eval = ctx.load_model()
    return est, heldout_rows(X_eval, n, int(ctx.cell.options.get("seed", 0)))


def predict_in_chunks(fmt, obj: Any, X: Any, chunk: int = FIDELITY_CHUNK) -> tuple:
    """Outputs for all rows, computed a chunk at a time so fidelity never needs a big batch."""
    parts = [predict(fmt, obj, X[i:i + chunk]) for i in range(0, len(X), chunk)]
    labels = np.concatenate([p[0] for p in parts])
    proba = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
    return labels, proba


def session_step(ctx: StepContext) -> dict:
    from threadpoolctl import threadpool_limits

    est, X = _rows(ctx, max(SMALL_BATCHES))
    with threadpool_limits(limits=THREADS):
        ctx.start_measuring()
        creations, session = [], None
        for _ in range(SESSION_REPEATS):
            start = time.perf_counter()
            session = onnx_session(ctx.workdir / ONNX_FILE, threads=THREADS)
            creations.append(time.perf_counter() - start)
        return {"session_create_s": float(np.median(creations)),
                "session_create_s_samples": creations, "threads": threads_used(),
                "latency": latency(est, session, X, SMALL_BATCHES,
                                   step_budget_s=SMALL_BATCHES_BUDGET_S)}


def fidelity_step(ctx: StepContext) -> dict:
    est, rows = _rows(ctx, FIDELITY_ROWS)
    session = onnx_session(ctx.workdir / ONNX_FILE, threads=THREADS)
    ctx.start_measuring()
    expected = predict_in_chunks(FORMATS["pickle"], est, rows)
    got = predict_in_chunks(FORMATS["onnx"], session, rows)
    return {"heldout_rows": len(rows), **fidelity(expected, got)}


def large_batches_step(ctx: StepContext) -> dict:
    """Last and alone: a batch that exhausts memory ends here, the smaller ones are kept."""
    from threadpoolctl import threadpool_limits

    est, X = _rows(ctx, max(LARGE_BATCHES))
    with threadpool_limits(limits=THREADS):
        session = onnx_session(ctx.workdir / ONNX_FILE, threads=THREADS)
        ctx.start_measuring()
        budget = float(ctx.cell.options.get("large_batches_budget_s", LARGE_BATCHES_BUDGET_S))
        return {"latency": ctx.previous["latency"]
                + latency(est, session, X, LARGE_BATCHES, step_budget_s=budget)}


# Ordered by the memory they may need, so a failure loses as little as possible.
STEPS = (convert_step, session_step, fidelity_step, large_batches_step)
