"""Same-session A/B: what one block of a cell measures inside a side's environment.

`persistbench ab` measures the same cells in two Python environments in one session. Each
environment runs a preloaded server (`persistbench.envs.server`); a block is one request to
it: a child forked from that server takes a few samples of one cell and writes them to a
JSON file. The harness alternates A's and B's blocks of the same cell in a random order
(`persistbench.schedule.interleave`), so whatever the machine does meanwhile hits both sides
alike, and each (A block, B block) pair gives paired ratios.

A step is what one side measures while the other waits: the cell's quantities under the
protocols `run` times them with (`persistbench.experiments.quantities`): a short series of
warm-repeated dumps, a series of warm-repeated loads of the file just written, one cold load
(after eviction, checked by mincore), then one `isolated-peak-memory` sample each of a dump
and of a load. Each series takes its protocol's warm-ups (kept apart, not recorded) and then
up to its number of samples or `STEP_BUDGET_S`, so a step of a small model takes tens of
milliseconds, most of it the two collections before the memory samples.

Why a series per step, not one run: a warm load of a small model takes 0.1-0.5 ms and one
such load scatters by 15-20 % (sd of log(B/A) of two loads taken back to back, measured
here under load 3-14); the fastest of a step's 20 loads scatters by a few per cent (the
report takes it: `persistbench.report.ab`), so the pair of steps, not the single load, is
the grain that drift and the test see. A's and B's
blocks of a cell run at the same time and their steps alternate one by one: the harness
tells each side over a control socket when to take its next step.

Functions named `*_in_env` run inside the environments: they import only the harness's
sources and measurement code and what the model needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from persistbench.experiments.compat import library_versions
from persistbench.experiments.quantities import (
    Dumps,
    NotCold,
    cold_load_quantity,
    load_quantity,
)
from persistbench.measure.sampling import peak_samples
from persistbench.results.vocabulary import cpu_key
from persistbench.sources.formats import FORMATS, Unsupported, describe_exception

NAME = "ab"
# What a block records per step, each a list: a time's entry is the step's list of samples,
# a memory peak's or a size's one number. The reports judge these.
TIMES = ("dump_s", "load_s", "load_cold_s")
MEMORY = ("dump_peak_rss_bytes", "load_peak_rss_bytes")
SIZES = ("file_bytes",)
# Each time's runs also record the thread's CPU time (`load_cpu_s`, ...): the report judges
# the warm ones by it (`persistbench.report.ab`).
CPU_TIMES = tuple(cpu_key(key) for key in TIMES)
# Samples per step and series (fewer once STEP_BUDGET_S of a series' runs are spent).
STEP_SAMPLES = {"dump_s": 5, "load_s": 20, "load_cold_s": 1}
STEP_BUDGET_S = 0.1


def prepare_in_env(args: dict) -> None:
    """Inside a side: train every model the cells need into the cache (once per scikit-learn
    stack: the cache key names it), and report the side's library versions."""
    from persistbench.results.schema import write_atomic
    from persistbench.sources.models import train_into_cache
    from persistbench.sources.resolve import resolve_spec

    out: dict = {"versions": library_versions(), "models": {}}
    for model in args["models"]:
        try:
            train_into_cache(resolve_spec(model), args["size"], args["seed"])
            out["models"][model] = None
        except Exception as exc:
            out["models"][model] = describe_exception(exc)
    write_atomic(Path(args["result"]), out)


class _Steps:
    """A block's quantities on its cell's file, and one step of each appended to `out`."""

    def __init__(self, fmt, est, X_eval, workdir: Path):
        self.fmt, self.out = fmt, {key: [] for key in (*TIMES, *CPU_TIMES, *MEMORY, *SIZES)}
        self.target = workdir / f"model{fmt.suffix}"
        self.dumps = Dumps(fmt, est, X_eval, workdir / "dumps")
        self.dumps.directory.mkdir()
        self.dumps.next_file()
        self.dumps.dump()  # raises Unsupported when the format cannot hold this model
        os.replace(self.dumps.path, self.target)
        self.prepared = fmt.prepare_load(self.target)
        self.fractions: list[float | None] = []
        self.cold_reason: str | None = None

    def _series(self, quantity, key: str) -> None:
        series = quantity.sample(STEP_SAMPLES[key], STEP_BUDGET_S)
        self.out[key].append(series.samples)
        self.out[cpu_key(key)].append(series.cpu)

    def step(self) -> None:
        fmt, out = self.fmt, self.out
        self._series(self.dumps.quantity(), "dump_s")
        out["dump_peak_rss_bytes"].append(peak_samples(
            self.dumps.dump, 1, between=self.dumps.next_file)[0].peak_rss_bytes)
        # The last dump is the file this step loads: a loaded mmap of the file before it
        # is never overwritten, the new name replaces it.
        os.replace(self.dumps.path, self.target)
        out["file_bytes"].append(self.target.stat().st_size)
        self._series(load_quantity(fmt, self.target, self.prepared), "load_s")
        out["load_peak_rss_bytes"].append(peak_samples(
            lambda: fmt.load(self.target, self.prepared), 1)[0].peak_rss_bytes)
        if self.cold_reason is None:
            try:
                self._series(cold_load_quantity(fmt, self.target, self.prepared,
                                                self.fractions), "load_cold_s")
            except NotCold as exc:
                self.cold_reason = str(exc)

    def result(self) -> dict:
        out = {"status": "ok", **self.out}
        if self.cold_reason is not None:
            out["load_cold_reason"] = self.cold_reason
        if not out["load_cold_s"] or self.cold_reason is not None:
            del out["load_cold_s"], out[cpu_key("load_cold_s")]
        return out


def block_in_env(args: dict) -> None:
    """Inside a side: one step each time the harness says `sample` on the control socket
    (answering `ok`), until it says `stop`.

    The harness sends `sample` to A and B in turn, so the two sides' steps of one cell
    alternate one by one while the idle side waits in a blocking read."""
    import socket

    from persistbench.results.schema import write_atomic
    from persistbench.sources.models import load_cached
    from persistbench.sources.resolve import resolve_spec

    result = Path(args["result"])
    if args.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args["cpu"]})  # the other side's block runs on it too
    fmt = FORMATS[args["format"]]
    est, X_eval = load_cached(resolve_spec(args["model"]), args["size"], args["seed"])
    try:
        steps = _Steps(fmt, est, X_eval, Path(args["workdir"]))
    except Unsupported as exc:
        write_atomic(result, {"status": "unsupported", "reason": str(exc)})
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.connect(args["control"])
        commands = control.makefile("r")
        while commands.readline().strip() == "sample":
            steps.step()
            control.sendall(b"ok\n")
    write_atomic(result, steps.result())


def read_block(path: Path) -> dict:
    """What a block wrote, or why it wrote nothing."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        return {"status": "error", "reason": f"the block wrote no result ({exc})"}
