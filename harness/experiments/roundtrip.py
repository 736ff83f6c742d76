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
from pathlib import Path

import numpy as np

from harness.experiments import Cell, StepContext
from harness.formats import FORMATS, Format, predict
from harness.measure import (
    Phase,
    cold_cache_supported,
    evict_from_page_cache,
    measure_phase,
    stats,
)

NAME = "roundtrip"
DESCRIPTION = "dump/load time (warm, cold), per-phase peak RSS, file size, prediction equality"
WARMUP_BELOW_S = 1.0  # a first run slower than this is kept as a sample, not thrown away
DEFAULT_BUDGET_S = 30.0
COLD_REPEATS = 3
EXPECTED = "expected.pkl"  # X_eval and the original's outputs, for the load step


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    return [Cell(NAME, m, s, f, options=options) for m in models for s in sizes for f in formats]


def artefact(ctx: StepContext) -> Path:
    return ctx.workdir / f"model{FORMATS[ctx.cell.format].suffix}"


def repeat_phase(run, repeat: int, budget_s: float, before_each=None) -> tuple[list[Phase], int]:
    """Warm up once when cheap, then repeat until `repeat` samples or the time budget is spent.

    Returns the samples and how many warm-up runs were discarded.
    """
    samples: list[Phase] = []
    warmups = 0
    spent = 0.0
    while len(samples) < repeat and not (samples and spent > budget_s):
        if before_each:
            before_each()
        phase = measure_phase(run)
        spent += phase.seconds
        if not samples and not warmups and phase.seconds < WARMUP_BELOW_S:
            warmups = 1
        else:
            samples.append(phase)
        phase.value = None
        gc.collect()
    return samples, warmups


def _summary(prefix: str, samples: list[Phase]) -> dict:
    seconds = [p.seconds for p in samples]
    peaks = [p.peak_rss_bytes for p in samples]
    return {
        f"{prefix}_s": stats(seconds),
        f"{prefix}_s_samples": seconds,
        f"{prefix}_peak_rss_bytes": int(np.median(peaks)) if peaks else 0,
        f"{prefix}_peak_rss_samples_bytes": peaks,
    }


def dump_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    est, X_eval = ctx.load_model()
    repeat = int(ctx.cell.options.get("repeat", 5))
    budget = float(ctx.cell.options.get("budget_s", DEFAULT_BUDGET_S))
    target = artefact(ctx)
    info: dict = {}
    counter = iter(range(1_000_000))

    def one_dump():
        path = ctx.workdir / f"dump{next(counter)}{fmt.suffix}"
        info.update(fmt.dump(est, path, X_eval))
        os.replace(path, target)

    ctx.start_measuring()
    samples, warmups = repeat_phase(one_dump, repeat, budget)
    labels, proba = predict(FORMATS["pickle"], est, X_eval)
    expected = {"X": X_eval, "labels": labels} | ({"proba": proba} if proba is not None else {})
    with open(ctx.workdir / EXPECTED, "wb") as fh:
        pickle.dump(expected, fh, protocol=5)
    return {
        **_summary("dump", samples),
        "dump_warmups": warmups,
        "file_bytes": os.path.getsize(target),
        "format_traits": fmt.traits(),
        **info,
    }


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
        out["label_agreement"] = float(np.mean(labels == want)) if same_shape else 0.0
        close = out["label_agreement"] == 1.0
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


def load_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    path = artefact(ctx)
    repeat = int(ctx.cell.options.get("repeat", 5))
    budget = float(ctx.cell.options.get("budget_s", DEFAULT_BUDGET_S))
    with open(ctx.workdir / EXPECTED, "rb") as fh:  # written by the dump step of this cell
        expected = pickle.load(fh)
    X_eval = expected["X"]
    prepared = fmt.prepare_load(path)

    ctx.start_measuring()
    samples, warmups = repeat_phase(lambda: fmt.load(path, prepared), repeat, budget)
    out = {**prepared, **_summary("load", samples), "load_warmups": warmups}

    if cold_cache_supported():
        cold_first_predict: list[float] = []
        cold: list[Phase] = []
        for _ in range(min(repeat, COLD_REPEATS)):
            evict_from_page_cache(path)
            phase = measure_phase(lambda: fmt.load(path, prepared))
            start = time.perf_counter()
            predict(fmt, phase.value, X_eval[:1])
            cold_first_predict.append(time.perf_counter() - start)
            phase.value = None
            gc.collect()
            cold.append(phase)
        out.update(_summary("load_cold", cold))
        out["load_cold_first_predict_s"] = stats(cold_first_predict)

    loaded = fmt.load(path, prepared)
    start = time.perf_counter()
    labels, proba = predict(fmt, loaded, X_eval)
    out["predict_eval_s"] = time.perf_counter() - start
    out.update(compare_predictions(fmt, labels, proba, expected))
    return out



STEPS = (dump_step, load_step)
