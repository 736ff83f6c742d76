"""Footprint: what a minimal server costs with onnxruntime, and with scikit-learn.

The scikit-learn guide says onnxruntime "typically requires much less RAM than Python to
compute predictions from small models". Two minimal servers answer it per model, each a
fresh interpreter (`persistbench.experiments.serving`), as a real server starts: one imports numpy
and onnxruntime and loads the `.onnx` file, the other imports scikit-learn and loads the
pickle (its unpickling imports the estimator's own modules, so that is part of its load).
Both then predict one row (`first_predict_s`: labels only; `first_predict_proba_s`: then
labels and probabilities) and hold still while their memory is read. Each server is
started a few times, alternating, and the medians are kept.
"""

from __future__ import annotations

import os
import statistics

from persistbench.experiments import Cell, StepContext
from persistbench.experiments.serving import Server, save_input
from persistbench.sources.formats import FORMATS

NAME = "footprint"
DESCRIPTION = "fresh onnxruntime vs scikit-learn server: import, load, first predict, RSS"
REPEATS = 3
ROWS = "rows"
SERVERS = {  # result key: (format, modules imported before the model is loaded)
    "onnx_server": ("onnx", ["numpy", "onnxruntime"]),
    "sklearn_server": ("pickle", ["numpy", "sklearn"]),
}
MEDIAN_KEYS = ("start_s", "import_s", "load_s", "first_predict_s", "first_predict_proba_s",
               "rss_after_predict_bytes", "uss_after_predict_bytes", "pss_after_predict_bytes")


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    if "onnx" not in formats:
        return []
    return [Cell(NAME, m, s, "onnx", options=options) for m in models for s in sizes]


def artefact(ctx: StepContext, fmt_name: str):
    return ctx.workdir / f"model{FORMATS[fmt_name].suffix}"


def run_server(fmt_name: str, model, rows, modules: list[str], stderr_path) -> dict:
    """One fresh server: start, import, load, predict one row, read its memory, stop."""
    with Server(fmt_name, model, rows, modules, stderr_path) as server:
        ready = server.wait_ready()
        served = server.serve()
        memory = server.memory()
    return {"start_s": ready["start_s"], "import_s": ready["import_s"],
            "load_s": served["load_s"], "first_predict_s": served["first_predict_s"],
            "first_predict_proba_s": served["first_predict_proba_s"],
            "sklearn_imported": served["sklearn_imported"],
            **{f"{key[:-len('_bytes')]}_after_predict_bytes": value
               for key, value in memory.items()}}


def summarise(samples: list[dict]) -> dict:
    """Medians of the repeated servers, with the samples beside them."""
    out: dict = {key: statistics.median(s[key] for s in samples) for key in MEDIAN_KEYS
                 if all(s.get(key) is not None for s in samples)}
    for key in ("rss_after_predict_bytes", "uss_after_predict_bytes", "pss_after_predict_bytes"):
        out[key] = int(out[key])
    return {**out, "sklearn_imported": any(s["sklearn_imported"] for s in samples),
            "n": len(samples), "samples": samples}


def prepare_step(ctx: StepContext) -> dict:
    est, X_eval = ctx.load_model()
    ctx.start_measuring()
    onnx_info = FORMATS["onnx"].dump(est, artefact(ctx, "onnx"), X_eval)  # Unsupported: a finding
    FORMATS["pickle"].dump(est, artefact(ctx, "pickle"), X_eval)
    save_input(X_eval[:1], ctx.workdir / ROWS)
    return {**onnx_info, "onnx_file_bytes": os.path.getsize(artefact(ctx, "onnx")),
            "pickle_file_bytes": os.path.getsize(artefact(ctx, "pickle"))}


def serve_step(ctx: StepContext) -> dict:
    rows = next(ctx.workdir.glob(f"{ROWS}.*"))
    repeats = min(REPEATS, int(ctx.cell.options.get("repeat", REPEATS)))
    samples: dict[str, list[dict]] = {key: [] for key in SERVERS}
    ctx.start_measuring()
    for index in range(repeats):  # alternate, so drift on a shared machine hits both alike
        for key, (fmt_name, modules) in SERVERS.items():
            samples[key].append(run_server(fmt_name, artefact(ctx, fmt_name), rows, modules,
                                           ctx.workdir / f"{key}{index}.stderr"))
    return {key: summarise(found) for key, found in samples.items()} | {
        "predict_rows": 1, "server_kind": "fresh interpreter (subprocess of sys.executable)"}


STEPS = (prepare_step, serve_step)
