"""Cross-version loading: save a model with scikit-learn A, load it with B, record what happens.

A cell is (model, format, A->B). Its dump step asks the environment of A to train the zoo
model and save it in every requested format once per run (the files are reused by every B);
its load step starts a fresh interpreter of B's environment that loads the file, predicts,
and compares with what A itself got from the same file. The outcome is the data: `ok`,
`warning` (e.g. `InconsistentVersionWarning`), `error` (the exception), `crash` (the process
died) or `differs` (it loaded, but predicts differently). The cell's status stays `ok`
whenever that observation was made; it is `unsupported` when A cannot save the model in that
format and `error` when an environment is missing or the harness itself failed.

Functions named `*_in_env` run inside the other environments (built by
`persistbench.envs.builder`), each in a child forked by that environment's preloaded server
(`persistbench.envs.server`): they import only `persistbench.sources.formats`,
`persistbench.sources.models` and what the model needs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from persistbench.experiments import Cell, StepContext
from persistbench.sources.formats import FORMATS, Unsupported, describe_exception, predict

NAME = "compat"
DESCRIPTION = "save with scikit-learn A, load with B: ok, warning, error, crash or differs"
MANIFEST = "saved.json"
PARAMETERS = "parameters.json"  # the saved model's fingerprints, when a cell asks for them
# Imported before warnings are recorded, so a loader's import-time deprecation notices are
# not mistaken for something the load itself said.
LOADER_MODULES = {"joblib": ("joblib",), "cloudpickle": ("cloudpickle",), "skops": ("skops.io",),
                  "skl2onnx+onnxruntime": ("onnxruntime",)}
SAVER_MODULES = {"skl2onnx+onnxruntime": ("skl2onnx",)}


def server_preload(formats: list[str]) -> tuple[str, ...]:
    """What the environments' servers import for these formats, besides scikit-learn."""
    libraries = {FORMATS[name].library for name in formats}
    return tuple(dict.fromkeys(module for lib in sorted(libraries) for module in
                               (*LOADER_MODULES.get(lib, ()), *SAVER_MODULES.get(lib, ()))))


class EnvironmentUnavailable(RuntimeError):
    """The scikit-learn version's environment could not be built or its server not started
    (the builder's or the server's reason inside)."""


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    """Every ordered pair of versions, including A->A (the baseline every other cell is read
    against). Options carry the environments (`persistbench.envs.builder.Environment.as_dict()`,
    with the socket of each one's server added by `persistbench.envs.server.running`)."""
    if "environments" not in options:
        from persistbench.sources.models import UsageError

        raise UsageError("the compat experiment needs one environment per scikit-learn "
                         "version: run it with `persistbench compat`")
    versions = [env["sklearn"] for env in options["environments"]]
    opts = {**options, "formats": formats}
    return [Cell(NAME, m, s, f, variant=f"{a}->{b}", options=opts, needs_model=False)
            for a in versions for m in models for s in sizes for f in formats for b in versions]


def pair(cell: Cell) -> tuple[dict, dict]:
    """The saving and the loading environment, named in the variant by their `key` (another
    experiment's environments, e.g. CPU architectures, share one scikit-learn version)."""
    saved, loaded = cell.variant.split("->")
    envs = {env.get("key", env["sklearn"]): env for env in cell.options["environments"]}
    return envs[saved], envs[loaded]


def side(env: dict) -> str:
    """How messages name an environment: its key if it has one, else its version."""
    return env.get("key") or f"scikit-learn {env['sklearn']}"


def _server(env: dict) -> str:
    """The socket of the environment's server."""
    if not env["python"]:
        raise EnvironmentUnavailable(f"no environment for {side(env)}: {env['reason']}")
    if not env.get("server"):
        raise EnvironmentUnavailable(f"no server for {side(env)}: "
                                     f"{env.get('server_error') or 'none was started'}")
    return env["server"]


def _died(returncode: int, stderr: str) -> str:
    if returncode < 0:
        return f"process died of {signal.Signals(-returncode).name}"
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return f"process exited with status {returncode}" + (f": {tail[-1][:300]}" if tail else "")


# ----------------------------------------------------------------------------- dump step

def handoff(path: Path, data: dict) -> None:
    """A JSON file one process hands to another during a run (a manifest, a load's answer):
    whole or absent (written beside, then renamed), but not fsynced and not indented. These
    are not results, and a power cut loses the run anyway; under emulation the fsync and
    the indenting encoder (pure Python) cost a third of a small model's load."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, allow_nan=False,
                      default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def saved_dir_of(options: dict, saved_with: str, model: str, size: str) -> Path:
    seed = int(options.get("seed", 0))
    return Path(options["artefacts_dir"]) / saved_with / f"{model}-{size}-{seed}"


def saved_dir(cell: Cell, saved_with: str) -> Path:
    return saved_dir_of(cell.options, saved_with, cell.model, cell.size)


def save_all(saved: dict, model: str, size: str, options: dict, formats: list[str],
             workdir: Path, timeout_s: float | None = None) -> dict:
    """Have A's server save `model` in those of `formats` not saved yet (the first one in
    any case), once per run; the manifest's entries. A format whose process died is
    recorded as an error with how it died."""
    from persistbench.envs.server import request
    directory = saved_dir_of(options, saved.get("key", saved["sklearn"]), model, size)
    manifest = directory / MANIFEST
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    if formats[0] in entries:
        return entries
    todo = [f for f in formats if f not in entries]
    proc = request(_server(saved), "persistbench.experiments.compat:save_in_env",
                   {"model": model, "size": size, "seed": int(options.get("seed", 0)),
                    "formats": todo, "directory": str(directory),
                    "parameters": bool(options.get("parameters"))}, workdir, timeout_s)
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    if formats[0] not in entries:
        raise RuntimeError(f"saving with {side(saved)}: {_died(proc.returncode, proc.stderr)}")
    died = [f for f, e in entries.items() if e["status"] == "started"]
    for name in died:  # the process died while saving these
        entries[name] = {"status": "error", "reason": _died(proc.returncode, proc.stderr)}
    if died:
        handoff(manifest, entries)
    return entries


def dump_step(ctx: StepContext) -> dict:
    """Make sure A has saved this model in this format; the file outlives the cell."""
    cell = ctx.cell
    saved, _ = pair(cell)
    ctx.start_measuring()
    entries = save_all(saved, cell.model, cell.size, cell.options,
                       [cell.format, *(f for f in cell.options["formats"] if f != cell.format)],
                       ctx.workdir)
    entry = entries[cell.format]
    if entry["status"] == "unsupported":
        raise Unsupported(f"{side(saved)}: {entry['reason']}")
    if entry["status"] != "ok":
        raise RuntimeError(f"saving with {side(saved)}: {entry['reason']}")
    return {"saved_with": saved["sklearn"], "saved_versions": entry["versions"],
            "file_bytes": entry["file_bytes"], **entry["info"]}


@functools.cache
def library_versions() -> dict:
    """The reported libraries' versions in this interpreter. Reading package metadata costs a
    quarter of a second, more than the load itself; an environment does not change during a
    run, so its server computes them once, before it forks (`persistbench.envs.server.WARM_UP`)."""
    from persistbench.envs.builder import REPORTED
    from persistbench.measure.machine import package_versions

    return package_versions(REPORTED)


def _estimator_modules(est) -> list[str]:
    """Modules of the estimator and its pipeline steps: what an unpickler will import."""
    parts = [est, *(step for _, step in getattr(est, "steps", []))]
    return sorted({type(p).__module__ for p in parts})


def _save_outputs(path: Path, labels: np.ndarray, proba: np.ndarray | None) -> None:
    arrays = {"labels": labels} | ({"proba": proba} if proba is not None else {})
    np.savez(path, **arrays)


def save_in_env(args: dict) -> None:
    """Inside A: train (through the model cache), save each format, and record what A itself
    predicts from each saved file (with `parameters`, also the fingerprints of what it
    saved, `persistbench.experiments.parameters`). A format whose process dies stays marked
    `started`."""
    from persistbench.sources.models import load_cached, train_into_cache
    from persistbench.sources.resolve import resolve_spec

    directory = Path(args["directory"])
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / MANIFEST
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    spec = resolve_spec(args["model"])
    train_into_cache(spec, args["size"], args["seed"])
    est, X_eval = load_cached(spec, args["size"], args["seed"])
    X = np.asarray(X_eval)
    np.save(directory / "X.npy", X, allow_pickle=False)
    if args.get("parameters"):
        from persistbench.experiments.parameters import fingerprints

        handoff(directory / PARAMETERS, fingerprints(est))
    versions = library_versions()
    for name in args["formats"]:
        fmt = FORMATS[name]
        entries[name] = {"status": "started"}
        handoff(manifest, entries)
        path = directory / f"model{fmt.suffix}"
        try:
            info = fmt.dump(est, path, X_eval)
        except Unsupported as exc:
            entries[name] = {"status": "unsupported", "reason": str(exc)}
        else:
            try:
                labels, proba = predict(fmt, fmt.load(path, fmt.prepare_load(path)), X)
                _save_outputs(directory / f"expected-{name}.npz", labels, proba)
                entries[name] = {"status": "ok", "file": path.name, "info": info,
                                 "file_bytes": path.stat().st_size, "versions": versions,
                                 "modules": _estimator_modules(est)}
            except Exception as exc:
                entries[name] = {"status": "error", "reason": "saved, but the saving version "
                                 f"cannot load it back: {describe_exception(exc)}"}
        handoff(manifest, entries)


# ----------------------------------------------------------------------------- load step

def load_in_env(args: dict) -> None:
    """Inside B (a child forked from B's server, used for this file only): load A's file,
    predict, keep every warning raised; how long the load and the first predict took, and
    with `parameters` (a path) the loaded model's fingerprints."""
    fmt = FORMATS[args["format"]]
    for module in [*LOADER_MODULES.get(fmt.library, ()), *args["modules"]]:
        with contextlib.suppress(ImportError):  # the load itself will report what is missing
            importlib.import_module(module)
    X = np.load(args["X"], allow_pickle=False)
    path = Path(args["file"])
    out: dict = {"versions": library_versions(), "finished": False}
    handoff(Path(args["result"]), out)  # from here on, a missing answer is a crash
    phase = "load"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            start = time.perf_counter()
            obj = fmt.load(path, fmt.prepare_load(path))
            out["load_once_s"] = time.perf_counter() - start
            if args.get("parameters"):
                from persistbench.experiments.parameters import fingerprints

                handoff(Path(args["parameters"]), fingerprints(obj))
            phase = "predict"
            start = time.perf_counter()
            labels, proba = predict(fmt, obj, X)
            out["predict_once_s"] = time.perf_counter() - start
            _save_outputs(Path(args["outputs"]), labels, proba)
            phase = None
        except Exception as exc:
            out["message"] = describe_exception(exc)
    out["failed_phase"] = phase
    out["finished"] = True
    out["warnings"] = [{"class": w.category.__name__, "text": str(w.message)[:500]}
                       for w in caught]
    handoff(Path(args["result"]), out)


def versions_differ(saved: dict, loaded: dict) -> dict[str, list]:
    """Libraries whose version differs between the two sides: [saved with, loaded with]."""
    return {lib: [saved.get(lib), loaded.get(lib)] for lib in sorted({*saved, *loaded})
            if saved.get(lib) != loaded.get(lib)}


def compare(expected: dict, got: dict) -> dict:
    """B's predictions against A's from the same file: labels exactly, probabilities too."""
    want, labels = expected["labels"], got["labels"]
    same_shape = want.shape == labels.shape
    out = {"label_agreement": float(np.mean(want == labels)) if same_shape else 0.0}
    equal = same_shape and bool(np.array_equal(want, labels))
    if "proba" in expected:
        p_want, p_got = expected["proba"], got.get("proba")
        if p_got is not None and p_got.shape == p_want.shape:
            out["proba_max_abs_diff"] = float(np.max(np.abs(p_got - p_want)))
            equal = equal and bool(np.array_equal(p_got, p_want))
        else:
            equal = False
    out["predictions_equal"] = equal
    return out


def classify(result: dict, comparison: dict | None) -> dict:
    """The outcome of one load. Differs outranks warning: a warned load that predicts the same
    is less serious than a silent one that does not. The first warning is kept, preferring
    scikit-learn's version warning."""
    warned = result.get("warnings", [])
    first = next((w for w in warned if w["class"] == "InconsistentVersionWarning"),
                 warned[0] if warned else None)
    if result.get("message"):
        outcome = "error"
    elif comparison is not None and not comparison["predictions_equal"]:
        outcome = "differs"
    elif warned:
        outcome = "warning"
    else:
        outcome = "ok"
    return {"outcome": outcome, "warning_class": first["class"] if first else None,
            "warning_text": first["text"] if first else None,
            "message": result.get("message"), "failed_phase": result.get("failed_phase"),
            "warnings_all": sorted({f"{w['class']}: {w['text'][:200]}" for w in warned})}


def load_step(ctx: StepContext) -> dict:
    from persistbench.envs.server import request

    cell = ctx.cell
    saved, loaded = pair(cell)
    server = _server(loaded)
    directory = saved_dir(cell, saved.get("key", saved["sklearn"]))
    entry = json.loads((directory / MANIFEST).read_text())[cell.format]
    result_path, outputs = ctx.workdir / "loaded.json", ctx.workdir / "outputs.npz"
    ctx.start_measuring()
    proc = request(server, "persistbench.experiments.compat:load_in_env",
                   {"format": cell.format, "file": str(directory / entry["file"]),
                    "X": str(directory / "X.npy"), "modules": entry["modules"],
                    "result": str(result_path), "outputs": str(outputs),
                    "parameters": str(ctx.workdir / PARAMETERS)
                    if cell.options.get("parameters") else None}, ctx.workdir)
    if not result_path.exists():  # it never reached the load: the harness failed, not B
        raise RuntimeError(f"loading with {side(loaded)}: "
                           f"{_died(proc.returncode, proc.stderr)}")
    result = json.loads(result_path.read_text())
    out = {"saved_with": saved["sklearn"], "loaded_with": loaded["sklearn"],
           "loaded_versions": result["versions"], "process_exit": proc.returncode,
           **{k: result[k] for k in ("load_once_s", "predict_once_s") if k in result},
           "versions_differ": versions_differ(entry["versions"], result["versions"])}
    if not result["finished"] or proc.returncode:
        phase = "load" if not result["finished"] else "exit"
        return {**out, "outcome": "crash", "failed_phase": phase, "warning_class": None,
                "warning_text": None, "message": _died(proc.returncode, proc.stderr)}
    comparison = None
    if outputs.exists():
        with np.load(directory / f"expected-{cell.format}.npz") as want, np.load(outputs) as got:
            comparison = compare(dict(want), dict(got))
    return {**out, **classify(result, comparison), **(comparison or {})}


STEPS = (dump_step, load_step)


# ------------------------------------------------------------------------------ summary
