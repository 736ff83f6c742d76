"""Same-session A/B: what one block of a cell measures inside a side's environment.

`persistbench ab` measures the same cells in two Python environments in one session. Each
environment runs a preloaded server (`persistbench.envs.server`); a block is one request to
it: a child forked from that server takes a few samples of one cell and writes them to a
JSON file. The harness alternates A's and B's blocks of the same cell in a random order
(`persistbench.schedule.interleave`), so whatever the machine does meanwhile hits both sides
alike, and each (A block, B block) pair gives paired ratios.

A sample is the round trip `run` times, in the situation `run` times it: the model is
dumped (time, peak RSS, file size), the file just written is loaded (warm page cache: time,
peak RSS), then evicted and loaded again (cold). After each phase the result is dropped and
`gc.collect()` runs, as in the roundtrip experiment. The block's first dump and load are its
warm-up (a process pays lazy imports and first-touch costs once) and are not kept. A's and
B's blocks of a cell run at the same time, and their samples alternate one by one: the
harness tells each side over a control socket when to take its next sample.

Functions named `*_in_env` run inside the environments: they import only the harness's
sources and measurement code and what the model needs.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from persistbench.experiments.compat import library_versions
from persistbench.measure.phases import evict_verified, measure_phase
from persistbench.sources.formats import FORMATS, Unsupported, describe_exception

NAME = "ab"
# What a block records per sample, each a list; the reports judge these.
TIMES = ("dump_s", "load_s", "load_cold_s")
MEMORY = ("dump_peak_rss_bytes", "load_peak_rss_bytes")
SIZES = ("file_bytes",)


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


def _phase(run) -> tuple[float, int]:
    """Time and peak RSS of one phase; its result is dropped before the next phase."""
    phase = measure_phase(run)
    phase.value = None
    gc.collect()
    return phase.seconds, phase.peak_rss_bytes


def _sample(fmt, target: Path, dump, out: dict) -> None:
    """One round trip: dump, warm load of the file just written, cold load."""
    seconds, peak = _phase(dump)
    out["dump_s"].append(seconds)
    out["dump_peak_rss_bytes"].append(peak)
    out["file_bytes"].append(target.stat().st_size)
    prepared = fmt.prepare_load(target)
    seconds, peak = _phase(lambda: fmt.load(target, prepared))
    out["load_s"].append(seconds)
    out["load_peak_rss_bytes"].append(peak)
    _, why_not = evict_verified(target)
    if why_not:
        out["load_cold_reason"] = why_not
    else:
        out["load_cold_s"].append(_phase(lambda: fmt.load(target, prepared))[0])


def block_in_env(args: dict) -> None:
    """Inside a side: one warm-up round trip of a cell, then one round trip each time the
    harness says `sample` on the control socket (answering `ok`), until it says `stop`.

    The harness sends `sample` to A and B in turn, so the two sides' samples of one cell
    alternate one by one while the idle side waits in a blocking read."""
    import socket

    from persistbench.results.schema import write_atomic
    from persistbench.sources.models import load_cached
    from persistbench.sources.resolve import resolve_spec

    result = Path(args["result"])
    fmt = FORMATS[args["format"]]
    est, X_eval = load_cached(resolve_spec(args["model"]), args["size"], args["seed"])
    workdir = Path(args["workdir"])
    target = workdir / f"model{fmt.suffix}"
    staged = workdir / f"staged{fmt.suffix}"

    def dump():
        fmt.dump(est, staged, X_eval)
        os.replace(staged, target)  # a loaded mmap of the last file is never overwritten

    try:
        dump()
    except Unsupported as exc:
        write_atomic(result, {"status": "unsupported", "reason": str(exc)})
        return
    prepared = fmt.prepare_load(target)
    _phase(lambda: fmt.load(target, prepared))
    out: dict = {"status": "ok", **{key: [] for key in (*TIMES, *MEMORY, *SIZES)}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.connect(args["control"])
        commands = control.makefile("r")
        while commands.readline().strip() == "sample":
            _sample(fmt, target, dump, out)
            control.sendall(b"ok\n")
    if not out["load_cold_s"]:
        del out["load_cold_s"]
    write_atomic(result, out)


def read_block(path: Path) -> dict:
    """What a block wrote, or why it wrote nothing."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        return {"status": "error", "reason": f"the block wrote no result ({exc})"}
