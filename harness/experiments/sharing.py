"""Sharing: N serving processes load one model file; what does each cost, and in total?

joblib's `mmap_mode="r"` should let processes share one copy of a model's arrays through
the page cache. Whether it does depends on the estimator: one that copies its arrays while
unpickling (a `__setstate__` that builds its own structures) gets a private copy anyway.
So it is measured, per model, against plain `joblib` and `pickle` protocol 5.

The servers are fresh interpreters (`persistbench.experiments.serving`), not forks of the
forkserver: a fork
would share the forkserver's preloaded libraries with its siblings and hide their cost in
PSS. A fresh interpreter pays for its own imports instead, so one more server of the same
kind, which imports the same modules but loads nothing, runs beside them as the baseline;
`model_pss_bytes` is what the N servers cost beyond N such baselines, i.e. the model itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from persistbench.experiments import Cell, StepContext
from persistbench.experiments.serving import Server, modules_for_loading, save_input
from persistbench.measure.phases import stats
from persistbench.sources.formats import FORMATS

NAME = "sharing"
DESCRIPTION = "N processes serve one file: RSS/USS/PSS per process and in total, mmap or not"
SHARING_FORMATS = ("joblib-mmap", "joblib", "pickle-p5")
DEFAULT_PROCESSES = 4
ROWS = "rows"


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    n = int(options.get("processes", DEFAULT_PROCESSES))
    chosen = [f for f in SHARING_FORMATS if f in formats]
    return [Cell(NAME, m, s, f, variant=f"n{n}", options=options)
            for m in models for s in sizes for f in chosen]


def artefact(ctx: StepContext) -> Path:
    return ctx.workdir / f"model{FORMATS[ctx.cell.format].suffix}"


def measure_sharing(fmt_name: str, model: Path, rows: Path, modules: list[str], processes: int,
                    workdir: Path) -> dict:
    """Start `processes` servers and one idle baseline; load one at a time; read memory.

    Loads run one after another (one measurement at a time), then every server holds its
    model while the memory of all of them is read at the same moment.
    """
    baseline = Server(fmt_name, model, rows, modules, workdir / "baseline.stderr")
    servers: list[Server] = []
    try:
        servers = [Server(fmt_name, model, rows, modules, workdir / f"server{i}.stderr")
                   for i in range(processes)]
        ready = [s.wait_ready() for s in (baseline, *servers)][1:]
        served = [s.serve() for s in servers]
        memory = [s.memory() for s in servers]
        base = baseline.memory()
    finally:
        for server in (baseline, *servers):
            server.stop()

    per_process = [{**mem, "load_s": done["load_s"], "predict_s": done["first_predict_s"],
                    "predict_proba_s": done["first_predict_proba_s"],
                    "import_s": up["import_s"], "start_s": up["start_s"]}
                   for mem, done, up in zip(memory, served, ready, strict=True)]
    total = {key: _sum(p[key] for p in per_process)
             for key in ("rss_bytes", "uss_bytes", "pss_bytes")}
    return {
        "processes": processes,
        "total_pss_bytes": total["pss_bytes"],
        "total_uss_bytes": total["uss_bytes"],
        "total_rss_bytes": total["rss_bytes"],
        "shared_bytes": _minus(total["rss_bytes"], total["uss_bytes"]),
        "per_process": per_process,
        "baseline_pss_bytes": base["pss_bytes"],
        "baseline_uss_bytes": base["uss_bytes"],
        "baseline_rss_bytes": base["rss_bytes"],
        "model_pss_bytes": _minus(total["pss_bytes"], _times(processes, base["pss_bytes"])),
        "model_uss_bytes": _minus(total["uss_bytes"], _times(processes, base["uss_bytes"])),
        "model_shared_bytes": _minus(
            _minus(total["rss_bytes"], total["uss_bytes"]),
            _times(processes, _minus(base["rss_bytes"], base["uss_bytes"]))),
        "load_s": stats([p["load_s"] for p in per_process]),
        "predict_s": stats([p["predict_s"] for p in per_process]),
        "server_modules": modules,
        "server_kind": "fresh interpreter (subprocess of sys.executable), 1 BLAS/OpenMP thread",
    }


def _sum(values) -> int | None:
    """A total, or None when one process's figure is missing (no PSS on this platform)."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _times(n: int, value: int | None) -> int | None:
    return None if value is None else n * value


def dump_step(ctx: StepContext) -> dict:
    fmt = FORMATS[ctx.cell.format]
    est, X_eval = ctx.load_model()
    ctx.start_measuring()
    info = fmt.dump(est, artefact(ctx), X_eval)
    save_input(X_eval, ctx.workdir / ROWS)
    modules = modules_for_loading(fmt.name, est)
    return {**info, "file_bytes": os.path.getsize(artefact(ctx)), "server_modules": modules}


def serve_step(ctx: StepContext) -> dict:
    rows = next(ctx.workdir.glob(f"{ROWS}.*"))
    ctx.start_measuring()
    return measure_sharing(ctx.cell.format, artefact(ctx), rows, ctx.previous["server_modules"],
                           int(ctx.cell.options.get("processes", DEFAULT_PROCESSES)),
                           ctx.workdir)


STEPS = (dump_step, serve_step)
