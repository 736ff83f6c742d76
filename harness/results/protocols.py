"""The measurement protocols: what situation each timing stands for, and what runs between
its samples. Every timing the harness records names one of these.

A figure means what its protocol says. The same load timed with a collection before each
sample, in a fresh interpreter, or in a loop with nothing in between gives figures up to 50×
apart (logreg pickle-p5 here: 14 µs repeated, 177 µs after `gc.collect()`, 92 µs first in a
fresh interpreter, about 700 µs as the first act of a forked worker). So what runs between
samples is part of a protocol's definition, chosen because the situation has it, never for
the harness's convenience: peak memory needs the allocator trimmed before each sample, so it
is taken in samples of its own (`isolated-peak-memory`), never in the timing samples.

The definitions live here, below every room, so the report names the protocol of a column
without importing the code that runs it (`persistbench.measure.sampling`), and a results file
of an older harness, which recorded no protocol, still reads under the protocol its keys
were taken with (`protocol_of`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    name: str
    situation: str  # the real situation the figure stands for
    process: str  # the process a sample runs in
    between: tuple[str, ...]  # what runs between two samples, outside the timing, in order
    warmups: int  # runs before the first kept sample (kept apart, not discarded)
    warmup_s: float = 0.0  # and more warm-up runs until this much time went into them

    def describe(self) -> str:
        """One paragraph: the legend of a column measured under this protocol."""
        steps = "; ".join(self.between) if self.between else "nothing"
        more = f" (and more until {self.warmup_s * 1e3:g} ms)" if self.warmup_s else ""
        return (f"{self.name}: {self.situation}. Runs in {self.process}; "
                f"{self.warmups} warm-up run(s){more}; between samples: {steps}.")


WARM_REPEATED = Protocol(
    "warm-repeated",
    "a process that already did this twice does it again (a server reloading its model, a "
    "job writing checkpoints): libraries imported, code paths warm",
    "one child of the harness forked from its preloaded forkserver",
    ("the previous sample's result is dropped (freed by reference counting); Python's own "
     "cyclic collector runs when its thresholds say, as in any process",),
    # Repeated loads settle after two in a plain process here; a fork of the preloaded
    # forkserver pays copy-on-write faults on its parent's allocator pools for longer (a 15 µs
    # load read 26-32 µs after 2 warm-ups, 16 µs after 10 ms of them, as a plain process).
    2, 0.01)
FIRST_IN_WORKER = Protocol(
    "first-in-worker",
    "a prefork server's worker (gunicorn --preload, uvicorn --workers, a multiprocessing "
    "pool) whose first act is this run: its parent imported every library measured here "
    "(numpy, scikit-learn's estimators, joblib, cloudpickle, skops.io, onnxruntime, "
    "skl2onnx), read its input and froze its collector (gc.freeze) before forking; each "
    "page the run writes that it shares with the parent is a copy-on-write fault, counted "
    "(most of a sub-millisecond load's figure here: logreg small pickle-p5 about 0.7 ms "
    "against about 0.1 ms in a process that imported the libraries itself)",
    "a worker forked for this one run from the cell's child (one sample per worker)",
    (), 0)
FIRST_IN_PROCESS = Protocol(
    "first-in-process",
    "the first time a process that has already done other work (its libraries imported "
    "and used) does this, e.g. a server loading a model it had not loaded yet; the pages "
    "that earlier work copied from a parent are not paid again (before `first-in-worker`, "
    "the round trip's first load was taken so: 264-313 µs for small files here, where a "
    "fresh worker pays about 700 µs)",
    "a child of the harness forked from its preloaded forkserver, after it read its inputs "
    "(one sample per process)",
    (), 0)
COLD_PAGE_CACHE = Protocol(
    "cold-page-cache",
    "a load after the file left the page cache (a server started after a reboot, or after "
    "other files pushed this one out)",
    "the warm-repeated process, after its warm loads",
    ("fsync + POSIX_FADV_DONTNEED on the file", "mincore checks the file is no longer "
     "resident (otherwise the measure is reported unsupported)"),
    0)
FIRST_LOAD_FRESH_PROCESS = Protocol(
    "first-load-fresh-process",
    "a prefork server's start: a new interpreter imports only the modules the file needs "
    "and reads its input row, then a worker forked from it loads the file as its first act "
    "and predicts one row (copy-on-write faults counted, as in `first-in-worker`)",
    "one new interpreter per start for all cells, forked where the cells' import lists part "
    "(`persistbench.experiments.starts`): imports are summed along a cell's path, each part "
    "timed once in a process that had imported exactly what precedes it; the load in a "
    "worker forked from the cell's own fork",
    ("a new interpreter",), 0)
# What sharing one interpreter among the cells assumes; the report prints it.
START_SHARING_ASSUMES = (
    "Server starts share their imports: one new interpreter per start imports what the "
    "cells' import lists have in common (numpy, then scikit-learn, then the format's "
    "library, then the file's own modules) and forks where they part; each fork imports its "
    "own next part, and each cell's load and first prediction are the first acts of a "
    "worker forked for them, as in a prefork server. This assumes that the interpreter's "
    "start-up and each shared import cost the same for every cell that shares them. The "
    "worker's first writes to pages it shares with its parent are copy-on-write faults; a "
    "server that loads in the interpreter that did the imports pays none of them, and its "
    "first load of a small file is several times quicker here (logreg small pickle-p5: "
    "about 0.1 ms against 0.7 ms; skops: about 0.8 against 3 ms); for loads of tens of "
    "milliseconds the two agree within this machine's noise.")
FIRST_PREDICT_AFTER_LOAD = Protocol(
    "first-predict-after-load",
    "the first prediction a freshly loaded model makes, where lazy loading (memory maps) "
    "pays what the load deferred; BLAS and OpenMP at one thread, as in the servers",
    "the warm-repeated process",
    ("the previous model is dropped", "the file is loaded again (not timed)"), 1, 0.01)
ISOLATED_PEAK_MEMORY = Protocol(
    "isolated-peak-memory",
    "how much memory one run needs above what the process holds live (memory only: these "
    "samples are never timings)",
    "the warm-repeated process, after its timing samples",
    ("gc.collect()", "malloc_trim(0) (glibc)", "the kernel's high-water mark reset "
     "(clear_refs) or an RSS sampler started"),
    0)
HOT_LOOP = Protocol(
    "hot-loop",
    "asv's own timer (`RoundTrip.time_*`): one call per sample with the collector off, the "
    "benchmark's setup re-run before each call",
    "asv's benchmark process",
    ("the benchmark's `setup` (cached lookups, a fresh file name)",), 1)
COLLECTED_BEFORE_EACH = Protocol(
    "collected-before-each",
    "no real situation: results written before protocols were recorded took each dump and "
    "load sample right after a collection and an allocator trim, which dominates any "
    "sub-millisecond figure",
    "one child of the harness forked from its preloaded forkserver",
    ("gc.collect()", "malloc_trim(0) (glibc)"), 1)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    WARM_REPEATED, FIRST_IN_WORKER, FIRST_IN_PROCESS, COLD_PAGE_CACHE, FIRST_LOAD_FRESH_PROCESS,
    FIRST_PREDICT_AFTER_LOAD, ISOLATED_PEAK_MEMORY, HOT_LOOP, COLLECTED_BEFORE_EACH)}

# The protocol each measure of the round trip is taken under; a cell records its own in
# `protocols` (key -> name), and this table is what the harness writes there.
MEASURE_PROTOCOLS: dict[str, str] = {
    "dump_s": WARM_REPEATED.name,
    "load_s": WARM_REPEATED.name,
    "dump_first_s": FIRST_IN_WORKER.name,
    "load_first_s": FIRST_IN_WORKER.name,
    "dump_first_peak_rss_bytes": FIRST_IN_WORKER.name,
    "load_first_peak_rss_bytes": FIRST_IN_WORKER.name,
    "load_cold_s": COLD_PAGE_CACHE.name,
    "load_cold_first_predict_s": COLD_PAGE_CACHE.name,
    "first_predict_s": FIRST_PREDICT_AFTER_LOAD.name,
    "first_predict_after_first_load_s": FIRST_IN_WORKER.name,
    "start_import_s": FIRST_LOAD_FRESH_PROCESS.name,
    "start_load_s": FIRST_LOAD_FRESH_PROCESS.name,
    "start_first_predict_s": FIRST_LOAD_FRESH_PROCESS.name,
    "start_total_s": FIRST_LOAD_FRESH_PROCESS.name,
    "dump_peak_rss_bytes": ISOLATED_PEAK_MEMORY.name,
    "load_peak_rss_bytes": ISOLATED_PEAK_MEMORY.name,
}
# A timing's CPU time is taken over the same runs, so under the same protocol.
MEASURE_PROTOCOLS.update({key.removesuffix("_s") + "_cpu_s": MEASURE_PROTOCOLS[key]
                          for key in ("dump_s", "load_s", "load_cold_s", "first_predict_s")})
# What a cell without `protocols` (an older harness's) was measured under: the same, except
# that its in-process samples each followed a collection and a trim, and its first runs were
# the cell's child's own.
FIRST_KEYS = ("dump_first_s", "load_first_s", "dump_first_peak_rss_bytes",
              "load_first_peak_rss_bytes", "first_predict_after_first_load_s")
UNRECORDED_PROTOCOLS: dict[str, str] = {
    **MEASURE_PROTOCOLS,
    **{k: COLLECTED_BEFORE_EACH.name for k in ("dump_s", "load_s", "load_cold_s",
                                               "first_predict_s")},
    **{k: FIRST_IN_PROCESS.name for k in FIRST_KEYS},
}


def protocol_of(key: str, cell: dict | None = None) -> str | None:
    """The protocol a cell's measure was taken under: the one the cell recorded, else the
    one an older harness used for that key (None: not a timing of a known protocol)."""
    recorded = (cell or {}).get("protocols")
    if isinstance(recorded, dict):
        return recorded.get(key)
    return UNRECORDED_PROTOCOLS.get(key)


def floor_of(key: str, cell: dict) -> float | None:
    """The harness floor recorded beside a cell's timing (None: not recorded)."""
    measure = cell.get(key)
    return measure.get("floor_s") if isinstance(measure, dict) else None


def floors(cells: list[dict]) -> dict[str, float]:
    """Protocol -> the median harness floor over the cells' timings taken under it."""
    found: dict[str, list[float]] = {}
    for cell in cells:
        for key in cell:
            value = floor_of(key, cell)
            name = protocol_of(key, cell)
            if value is not None and name:
                found.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in found.items()}


# Figures that are not timings of a protocol above still say how they were obtained, so a
# table of figures (`report.tidy`) never mixes kinds: name -> what the figure is.
OTHER_KINDS: dict[str, str] = {
    "deterministic": "a file size: the same on every run",
    "fidelity": "the loaded model's predictions against the original's",
    "fresh-servers": "N freshly started serving processes, memory read after a prediction",
    "other-environment": "saved in one scikit-learn environment, loaded in another",
    "once": "measured once per cell, not repeated",
}
KINDS = (*PROTOCOLS, *OTHER_KINDS)
BY_EXPERIMENT = {  # when neither the cell nor a rule on the key says
    "roundtrip": WARM_REPEATED.name,
    "inference": WARM_REPEATED.name,
    "footprint": FIRST_LOAD_FRESH_PROCESS.name,
    "sharing": "fresh-servers",
    "compat": "other-environment",
}


def protocol(experiment: str, key: str, cell: dict | None = None) -> str:
    """How any measure `key` (a dotted path, as `report.compare.measures` names it) was
    obtained: a protocol's name for a timing, else one of `OTHER_KINDS`."""
    leaf = key.rsplit(".", 1)[-1]
    if "file_bytes" in leaf:
        return "deterministic"
    if leaf.startswith("label_agreement") or leaf.endswith("_diff"):
        return "fidelity"
    if experiment == "roundtrip":
        named = protocol_of(key.removesuffix("_samples"), cell)
        if named:
            return named
        if key == "predict_eval_s":
            return "once"
        if "_first" in key:  # e.g. dump_first_peak_rss_bytes
            return FIRST_IN_PROCESS.name
    if "warmup" in leaf:
        return FIRST_IN_PROCESS.name
    return BY_EXPERIMENT.get(experiment, "once")
