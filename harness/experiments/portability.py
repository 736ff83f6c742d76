"""Across CPU architectures: save a model on one, load it and predict on another.

A cell is (model, format, A->B) where A and B are Debian trees of different architectures
holding the same library versions (`persistbench.envs.arch`). The steps are the compat
experiment's (`persistbench.experiments.compat`): A's preloaded server trains the model and
saves it in every format, with what A itself predicts from each file and the fingerprints of
every parameter (`persistbench.experiments.parameters`); B's server forks a child that loads
one file, fingerprints what it loaded and predicts. What is added here is the judgement:

- parameters `exact` when every array fingerprint matches once byte order and integer width
  are normalised, else `differ` with the first parameter that does;
- outcome `identical` (predictions byte-equal), `within-tolerance` (labels equal, every
  number within TOLERANCE, scaled by the value), `differs`, `error-load`, `error-predict`
  (with the library's message) or `crash` (the process died).

Timings taken under emulation are marked `emulated`: they say nothing about the real CPU.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from persistbench.experiments import Cell, StepContext, compat
from persistbench.experiments.parameters import first_difference
from persistbench.results.vocabulary import PORTABILITY_TOLERANCE as TOLERANCE

NAME = "portability"
DESCRIPTION = ("save on one CPU architecture, load and predict on another (same library "
               "versions): identical, within tolerance, differs, error or crash")


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    """One cell per direction x model x format. Options carry the trees as environments
    (`persistbench.envs.arch.Tree.as_env()`, with their servers) and the directions
    ("amd64->i386")."""
    if "environments" not in options or "directions" not in options:
        from persistbench.sources.models import UsageError

        raise UsageError("the portability experiment needs architecture trees: run it with "
                         "`persistbench portability`")
    opts = {**options, "formats": formats, "parameters": True}
    return [Cell(NAME, m, s, f, variant=d, options=opts, needs_model=False)
            for d in options["directions"] for m in models for s in sizes for f in formats]


def presave(models: list[str], sizes: list[str], formats: list[str], options: dict,
            workdir: Path, timeout_s: float) -> None:
    """Every saving side saves every model in every format before the cells run, the sides
    at once (one thread each; a side's server takes one request at a time). The dump steps
    then find the files; nothing is measured here, and a save that failed is met again, and
    recorded, by its cell's own dump step. Emulated saving is the slowest part of a run, and
    it need not wait for the native cells."""
    from concurrent.futures import ThreadPoolExecutor

    envs = {env["key"]: env for env in options["environments"]}
    savers = [envs[key] for key in dict.fromkeys(d.split("->")[0]
                                                 for d in options["directions"])]
    opts = {**options, "parameters": True}

    def save_side(env: dict) -> None:
        if not env.get("server"):
            return
        for model in models:
            for size in sizes:
                with contextlib.suppress(RuntimeError, TimeoutError, OSError):
                    compat.save_all(env, model, size, opts, formats,
                                    Path(workdir) / env["key"], timeout_s)

    for directory in savers:
        (Path(workdir) / directory["key"]).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(len(savers), 1)) as pool:
        list(pool.map(save_side, savers))


def agreement(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict:
    """How B's predictions compare with A's from the same file: `identical`, or
    `within-tolerance` (non-float outputs equal, every float within TOLERANCE x max(1, |A|)),
    else `differs`, with the largest absolute difference seen."""
    verdict, worst = "identical", 0.0
    for key, a in want.items():
        b = got.get(key)
        if b is None or a.shape != b.shape:
            return {"predictions": "differs", "differs_in": key, "max_abs_diff": None}
        if np.array_equal(a, b):
            continue
        if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
            return {"predictions": "differs", "differs_in": key, "max_abs_diff": None,
                    "label_agreement": float(np.mean(a == b))}
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        worst = max(worst, float(diff.max()))
        if (diff > TOLERANCE * np.maximum(1.0, np.abs(a))).any():
            return {"predictions": "differs", "differs_in": key, "max_abs_diff": worst}
        verdict = "within-tolerance"
    return {"predictions": verdict, "max_abs_diff": worst}


def judge(loaded: dict, predictions: dict | None) -> str:
    """The cell's outcome from the compat load's own (`ok`, `warning`, `differs`, `error`,
    `crash`, with the phase that failed) and this experiment's prediction verdict."""
    if loaded["outcome"] == "crash":
        return "crash"
    if loaded["outcome"] == "error":
        return "error-predict" if loaded.get("failed_phase") == "predict" else "error-load"
    return predictions["predictions"] if predictions else "differs"


def _outputs(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return dict(data)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def load_step(ctx: StepContext) -> dict:
    """The compat load on B, then this experiment's verdict on what B got."""
    cell = ctx.cell
    saved, loaded = compat.pair(cell)
    result = compat.load_step(ctx)
    directory = compat.saved_dir(cell, saved["key"])
    want = _outputs(directory / f"expected-{cell.format}.npz")
    got = _outputs(ctx.workdir / "outputs.npz")
    predictions = agreement(want, got) if want is not None and got is not None else None
    here = _read_json(directory / compat.PARAMETERS)
    there = _read_json(ctx.workdir / compat.PARAMETERS)
    difference = first_difference(here, there) if here is not None and there is not None \
        else None
    out = {**result, **(predictions or {}),
           "outcome": judge(result, predictions),
           "parameters": None if there is None else ("differ" if difference else "exact"),
           "parameters_difference": difference, "parameters_compared": len(here or {}),
           "tolerance": TOLERANCE, "saved_on": saved["key"], "loaded_on": loaded["key"],
           "saved_machine": saved.get("machine"), "loaded_machine": loaded.get("machine"),
           "loaded_route": loaded.get("route"), "loaded_emulator": loaded.get("emulator"),
           "saved_route": saved.get("route"), "saved_emulator": saved.get("emulator"),
           "loaded_pointer_bits": loaded.get("pointer_bits"),
           "loaded_byteorder": loaded.get("byteorder"),
           "loaded_python": loaded.get("python_version"),
           "saved_stack": saved.get("stack"), "loaded_stack": loaded.get("stack"),
           # The load and predict times are the loading side's: emulated ones are not the
           # CPU's and are never set beside native ones.
           "emulated": loaded.get("route") == "emulated"}
    out.pop("predictions_equal", None)
    return out


STEPS = (compat.dump_step, load_step)
