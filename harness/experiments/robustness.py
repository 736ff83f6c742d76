"""Robustness: what each format's loader does with a damaged file.

The model is dumped once; then truncated copies (several cut points) and copies with one
seeded random bit flipped are each loaded, and predicted with, in a child process of their
own with a timeout and a cap on address space. Outcomes: a clean exception, a silent wrong
load (it loads and predicts, but not what the intact file predicts), an identical load, a
crash (the process died of a signal) or a hang (killed at the timeout). The reference is
the intact file loaded the same way, so ONNX is held to its own outputs, not scikit-learn's.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from persistbench.experiments import Cell, StepContext
from persistbench.measure.phases import cap_address_space
from persistbench.results.schema import write_atomic
from persistbench.sources.formats import FORMATS, describe_exception, predict

NAME = "robustness"
DESCRIPTION = "truncated and bit-flipped files: clean exception, silent wrong load, identical, " \
              "crash, hang"
OUTCOMES = ("clean_exception", "silent_wrong", "loaded_identical", "crash", "hang")
CUT_FRACTIONS = (0.01, 0.25, 0.5, 0.75, 0.99)
BITFLIPS = 10
MIN_TRIAL_TIMEOUT_S = 10.0
MAX_TRIAL_TIMEOUT_S = 60.0
TIMEOUT_FACTOR = 20.0  # a damaged file taking 20x the intact load is hanging
ADDRESS_SPACE_HEADROOM = 2 << 30  # a corrupt length field must not take the machine's memory
MAX_EXAMPLES = 8
X_FILE = "X.pkl"
EXPECTED = "expected.pkl"


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    return [Cell(NAME, m, s, f, options=options) for m in models for s in sizes for f in formats]


def artefact(ctx: StepContext) -> Path:
    return ctx.workdir / f"model{FORMATS[ctx.cell.format].suffix}"


def dump_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    est, X_eval = ctx.load_model()
    path = artefact(ctx)
    info = fmt.dump(est, path, X_eval)
    with open(ctx.workdir / X_FILE, "wb") as fh:  # the harness's own data, for the loads
        pickle.dump(X_eval, fh, protocol=5)
    return {"file_bytes": path.stat().st_size, **info}


# ---------------------------------------------------------------------------- corruptions

def corruptions(data: bytes, seed: int, bitflips: int) -> Iterator[tuple[str, str, bytes]]:
    """(kind, label, damaged bytes): truncations at fixed fractions, then seeded bit flips.

    One damaged copy at a time: a large model must not be held in memory once per trial.
    """
    size = len(data)
    cuts = sorted({max(1, min(size - 1, int(size * f))) for f in CUT_FRACTIONS} | {size - 1})
    for n in cuts:
        if n > 0:
            yield "truncated", f"truncated to {n} of {size} bytes", data[:n]
    rng = np.random.default_rng(seed)
    for _ in range(bitflips):
        pos, bit = int(rng.integers(size)), int(rng.integers(8))
        damaged = bytearray(data)
        damaged[pos] ^= 1 << bit
        yield "bitflip", f"bit {bit} of byte {pos} flipped", bytes(damaged)


# ------------------------------------------------------------------------- child: one load

def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _difference(got: tuple, want: tuple) -> str:
    labels, proba = got
    try:
        changed = float(np.mean(np.asarray(labels) != np.asarray(want[0])))
        text = f"{changed:.1%} of predictions differ"
    except (ValueError, TypeError):
        return f"predictions changed shape/type ({np.asarray(labels).shape})"
    if proba is not None and want[1] is not None and np.shape(proba) == np.shape(want[1]):
        text += f", max |Δproba| {float(np.nanmax(np.abs(proba - want[1]))):.3g}"
    return text


def _stderr_beside(result_path: str) -> None:
    """Damaged files make libraries print warnings and tracebacks, from C too: they go to a
    file beside the result, not to the run's terminal, and explain a crash afterwards.
    stdout goes there as well: a trial's result travels through its result file only."""
    fd = os.open(f"{result_path}.stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.dup2(fd, 1)  # onnxruntime's Python layer prints its fallbacks to stdout
    os.close(fd)


def last_words(result_path: Path) -> str:
    """What a dead or killed trial printed: faulthandler's fatal error (or timeout) and the
    innermost frame of the stack it dumped."""
    try:
        lines = Path(f"{result_path}.stderr").read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    fatal = next((line for line in lines
                  if line.startswith(("Fatal Python error", "Timeout ("))), None)
    if fatal:
        frame = next((line.strip() for line in lines if line.strip().startswith("File ")), "")
        return f"{fatal}; innermost frame: {frame}"[:300]
    return lines[-1][:200] if lines else ""


def load_trial(fmt_name: str, path: str, workdir: str, reference: bool, as_limit: int | None,
               timeout_s: float, result_path: str) -> None:
    """Child entry point: load a (possibly damaged) file, predict, compare, report."""
    _stderr_beside(result_path)
    faulthandler.enable()  # a segfault in a library leaves its Python stack in the log
    faulthandler.dump_traceback_later(max(timeout_s - 1.0, 0.5))  # so does a hang
    cap_address_space(as_limit)
    fmt = FORMATS[fmt_name]
    folder = Path(workdir)
    with open(folder / X_FILE, "rb") as fh:
        X = pickle.load(fh)
    phase = "load"
    started = time.perf_counter()
    try:
        loaded = fmt.load(Path(path), fmt.prepare_load(Path(path)))
        phase = "predict"
        got = predict(fmt, loaded, X)
        elapsed = time.perf_counter() - started
    except Exception as exc:  # how the loader fails is the measurement
        write_atomic(Path(result_path), {"status": "ok", "outcome": "clean_exception",
                                         "detail": f"at {phase}: {describe_exception(exc)}"})
        return
    if reference:
        with open(folder / EXPECTED, "wb") as fh:
            pickle.dump(got, fh, protocol=5)
        outcome, detail = "loaded_identical", "intact file"
    else:
        with open(folder / EXPECTED, "rb") as fh:
            want = pickle.load(fh)
        same = _same(got[0], want[0]) and _same(got[1], want[1])
        outcome = "loaded_identical" if same else "silent_wrong"
        detail = "predictions identical" if same else _difference(got, want)
    write_atomic(Path(result_path), {"status": "ok", "outcome": outcome, "detail": detail,
                                     "elapsed_s": elapsed})


# ---------------------------------------------------------------------- parent of the loads

def classify(outcome: dict) -> tuple[str, str]:
    """A child's ending (see `StepContext.run_child`) as one of OUTCOMES, with detail."""
    status = outcome.get("status")
    if status == "timeout":
        return "hang", outcome.get("reason", "")
    if status == "crashed":
        return "crash", outcome.get("reason", "")
    if status == "ok" and outcome.get("outcome") in OUTCOMES:
        return outcome["outcome"], outcome.get("detail", "")
    return "clean_exception", outcome.get("reason", "")


def _address_space_limit(file_bytes: int) -> int:
    """Current virtual size plus headroom: a bogus huge allocation fails with MemoryError."""
    import psutil

    return psutil.Process().memory_info().vms + max(ADDRESS_SPACE_HEADROOM, 20 * file_bytes)


def trials_step(ctx: StepContext) -> dict:
    fmt = ctx.cell.format
    path = artefact(ctx)
    data = path.read_bytes()
    limit = _address_space_limit(len(data))
    trial_dir = ctx.workdir / "trials"
    trial_dir.mkdir(exist_ok=True)
    baseline = ctx.run_child(load_trial, (fmt, str(path), str(ctx.workdir), True, limit,
                                      MAX_TRIAL_TIMEOUT_S * 5),
                         trial_dir / "reference.json", MAX_TRIAL_TIMEOUT_S * 5)
    if classify(baseline)[0] != "loaded_identical":
        raise RuntimeError(f"the intact file does not load: {classify(baseline)[1]}")
    intact_s = float(baseline["elapsed_s"])
    timeout = min(MAX_TRIAL_TIMEOUT_S, max(MIN_TRIAL_TIMEOUT_S, TIMEOUT_FACTOR * intact_s))

    seed = zlib.crc32(ctx.cell.cell_id.encode()) ^ int(ctx.cell.options.get("seed", 0))
    bitflips = int(ctx.cell.options.get("bitflips", BITFLIPS))
    counts = {kind: dict.fromkeys(OUTCOMES, 0) for kind in ("truncated", "bitflip")}
    examples: list[dict] = []
    damaged_path = trial_dir / path.name
    ctx.start_measuring()
    for index, (kind, label, damaged) in enumerate(corruptions(data, seed, bitflips)):
        damaged_path.write_bytes(damaged)
        result_path = trial_dir / f"trial{index}.json"
        outcome, detail = classify(ctx.run_child(
            load_trial, (fmt, str(damaged_path), str(ctx.workdir), False, limit, timeout),
            result_path, timeout))
        if outcome in ("crash", "hang") and last_words(result_path):
            detail += f"; {last_words(result_path)}"
        counts[kind][outcome] += 1
        if len(examples) < MAX_EXAMPLES and not any(e["outcome"] == outcome and
                                                    e["kind"] == kind for e in examples):
            examples.append({"kind": kind, "corruption": label, "outcome": outcome,
                             "detail": detail[:300]})
    total = {o: counts["truncated"][o] + counts["bitflip"][o] for o in OUTCOMES}
    return {"trials": sum(total.values()), "outcomes": total,
            **{f"n_{o}": n for o, n in total.items()},  # flat: one column each in tables
            "outcomes_truncated": counts["truncated"], "outcomes_bitflip": counts["bitflip"],
            "examples": examples, "trial_timeout_s": timeout, "intact_load_s": intact_s,
            "address_space_limit_bytes": limit, "bitflip_seed": seed}


STEPS = (dump_step, trials_step)
