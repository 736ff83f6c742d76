"""Runs the protocols defined in `persistbench.results.protocols`: timing samples with exactly
what the protocol puts between them, the harness's floor under each protocol, and peak
memory in samples of its own.

Timing samples and memory samples are separate because they need opposite things: a peak
needs the collector run and the allocator trimmed before the phase (else the previous
sample's freed memory is reused and the phase looks cheaper), and that housekeeping makes
the next small load 10-13× slower than it is in any real process. So timings run under
their protocol alone, and `isolated-peak-memory` samples follow them.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from persistbench.measure.methods import active, start_method
from persistbench.measure.phases import (
    CLEAR_REFS,
    PEAK_METHOD,
    PEAK_VMHWM,
    PeakSampler,
    Phase,
    measure_phase,
    status_bytes,
)
from persistbench.results.precision import relative_halfwidth
from persistbench.results.protocols import Protocol

FLOOR_SAMPLES = 25
MAX_WARMUPS = 10_000  # a warm-up by time stops here whatever the run costs
MAX_SAMPLES = 400  # with --precision: a sub-microsecond phase would otherwise run for its budget
# Wall seconds every `sample` call of this process spent (warm-ups, samples and what ran
# between them): a child reports it, so a run's shared time budget (`schedule.budget`)
# knows what each cell used and gives the rest to the cells still to come.
_spent_in_process = [0.0]


def spent_in_process() -> float:
    return _spent_in_process[0]


@dataclass
class Series:
    """A protocol's timing samples of one phase: the warm-up runs kept apart, the kept
    samples, and why there are fewer than asked for (budget spent), if there are."""

    protocol: str
    warmups: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the thread's CPU time of each sample
    short_reason: str | None = None

    @property
    def first(self) -> float | None:
        return self.warmups[0] if self.warmups else None


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """perf_counter around one call; the value comes back so the caller decides its life."""
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def enough(samples: list[float], repeat: int, precision: float | None) -> bool:
    """The stopping rule: `repeat` samples; with `precision`, until the median's 95 %
    interval is within that fraction of it (at least the 6 samples an interval needs), at
    most MAX_SAMPLES."""
    if precision is None:
        return len(samples) >= repeat
    if len(samples) >= MAX_SAMPLES:
        return True
    width = relative_halfwidth(samples)
    return width is not None and width <= precision


def sample(protocol: Protocol, run: Callable[[], Any], repeat: int, budget_s: float,
           between: Callable[[], Any] | None = None, after: Callable[[Any], Any] | None = None,
           precision: float | None = None) -> Series:
    """`protocol.warmups` runs, then samples until `repeat` (or, with `precision`, until
    the median's 95 % interval is that tight) or the time budget is spent; at least one
    sample.

    `between()` is what the protocol runs before each run (eviction, an untimed load); it
    is the caller's because it needs the cell's file, but the protocol names it. The budget
    counts its time and `after`'s too (outside the timings): a cold load's eviction or a
    first prediction's untimed load can cost more than the timed run, and the budget is
    what the user waits for. `after(v)`
    sees each run's value while it is alive (outside the timing); the value is then dropped,
    which is all a warm-repeated process does between two loads.

    Each kept sample also records the calling thread's CPU time over the same run (`cpu`),
    read outside the wall-clock pair: on a shared machine a run of a few milliseconds waits
    for the CPU as long as it runs (other processes' time slices), and that wait, not the
    code, is what moves its wall time between runs. CPU time leaves the wait out and keeps
    what the run itself does, in user or kernel mode. The thread's, not the process's: on
    Linux another thread's time is added to the process's only at each scheduler tick
    (4 ms here), so a 20 us load read 4.1 ms of process CPU time now and then.
    """
    series = Series(protocol.name)
    spent = 0.0
    cpu = [0.0]  # the last run's CPU time
    began = time.perf_counter()

    def one() -> float:
        nonlocal spent
        if between is not None:
            started = time.perf_counter()
            between()
            spent += time.perf_counter() - started
        cpu_began = time.thread_time()
        seconds, value = timed(run)
        cpu[0] = time.thread_time() - cpu_began
        if after is not None:
            started = time.perf_counter()
            after(value)
            spent += time.perf_counter() - started
        spent += seconds
        return seconds  # the value dies here

    warming = time.perf_counter()  # the wall clock: an empty run's own time is nanoseconds
    for _ in range(protocol.warmups):
        series.warmups.append(one())
    while time.perf_counter() - warming < protocol.warmup_s and \
            len(series.warmups) < MAX_WARMUPS and spent <= budget_s:
        series.warmups.append(one())
    while not series.samples or not (spent > budget_s
                                     or enough(series.samples, repeat, precision)):
        series.samples.append(one())
        series.cpu.append(cpu[0])
    if not enough(series.samples, repeat, precision):
        goal = (f"{repeat} samples" if precision is None else
                f"a 95 % interval within ±{precision:.0%}")
        series.short_reason = (f"{len(series.samples)} samples short of {goal}: the "
                               f"{budget_s:.3g} s time budget was spent (one run took "
                               f"{max(series.samples):.3g} s)")
    _spent_in_process[0] += time.perf_counter() - began
    return series


def floor(protocol: Protocol, between: Callable[[], Any] | None = None,
          n: int = FLOOR_SAMPLES) -> list[float]:
    """The harness's own cost of timing an empty phase under `protocol`, in this process.

    A difference between two formats smaller than this is the timer's and the protocol's,
    not the formats': the verdict calls it a tie. The protocol's warm-up by time is left out
    (its runs, not its time): it settles what a real run touches, and an empty run touches
    nothing, so it only cost every cell 10 ms per floor.
    """
    counted = replace(protocol, warmup_s=0.0)
    return sample(counted, lambda: None, n, float("inf"), between=between).samples


def peak_samples(run: Callable[[], Any], n: int,
                 between: Callable[[], Any] | None = None,
                 budget_s: float = float("inf")) -> list[Phase]:
    """`isolated-peak-memory`: collect, trim, reset the high-water mark, run; n times, or
    fewer (at least one) once `budget_s` is spent: a peak moves little between runs, and a
    medium model's lzma dump takes tens of seconds each on a loaded machine here.

    These runs' times are not kept as timings: the housekeeping before them is not part of
    any situation a timing stands for.
    """
    phases: list[Phase] = []
    began = time.perf_counter()
    for _ in range(n):
        if phases and time.perf_counter() - began > budget_s:
            break
        if between is not None:
            between()
        gc.collect()
        phase = measure_phase(run)
        phase.value = None
        phases.append(phase)
    return phases


def _first_phase(run: Callable[[], Any]) -> Phase:
    """`measure_phase` with nothing before the timing but two reads of /proc and a write:
    no psutil, whose import here would copy the pages the run is about to pay for."""
    if PEAK_METHOD != PEAK_VMHWM:
        return measure_phase(run, release=False)
    before = status_bytes("VmRSS:")
    try:
        fd = os.open(CLEAR_REFS, os.O_WRONLY)
    except PermissionError:  # confined to the parent's /proc entry: sample the RSS instead
        sampler = PeakSampler()
        sampler.start()
        seconds, value = timed(run)
        return Phase(seconds=seconds, peak_rss_bytes=max(0, sampler.finish() - before),
                     value=value)
    os.write(fd, b"5")
    os.close(fd)
    seconds, value = timed(run)
    return Phase(seconds=seconds, peak_rss_bytes=max(0, status_bytes("VmHWM:") - before),
                 value=value)


def _end_as(status: int) -> None:
    """End this process as the worker ended: a run that aborts or is killed would have
    done so in this process too, had it run here, and the cell is then recorded as
    crashed with that signal or status, not as an error of the harness."""
    if os.WIFSIGNALED(status):
        signo = os.WTERMSIG(status)
        signal.signal(signo, signal.SIG_DFL)
        os.kill(os.getpid(), signo)
        os._exit(128 + signo)  # a signal this process survives even at its default action
    os._exit(os.WEXITSTATUS(status) or 1)


def first_in_fork(run: Callable[[], Any],
                  then: Callable[[Any], Any] | None = None) -> tuple[Phase, float | None]:
    """`first-in-worker`: `run()` as the first act of a worker just forked from this
    process, with its peak memory; then `then(value)` timed in the worker too (the first
    prediction after that first load). Returns the run's phase (its value stays in the
    worker) and `then`'s seconds.

    The worker does nothing before the run but read its RSS and reset its high-water mark,
    so each page the run writes that it shares with this process is a copy-on-write fault
    inside the timing, as in a prefork server's worker. This process's collector is frozen
    first (`gc.freeze`, what Python's documentation asks of a process before it forks), so
    a collection in the worker never walks, and copies, the pages of its parent's objects.
    The first run in this process instead would find pages that earlier work here already
    copied: 264-313 µs against 686-700 µs for the first loads of small files here.

    The worker's exception is raised here as itself (a format that refuses the model stays
    `unsupported`); a worker that dies ends this process the same way (`_end_as`).

    Where forking is unsafe (macOS: the cell's child is a new interpreter, spawned), the run
    is this process's own first one.
    """
    if start_method(active()) != "forkserver":
        phase = measure_phase(run, release=False)
        then_s = timed(lambda: then(phase.value))[0] if then is not None else None
        phase.value = None
        return phase, then_s
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: its result goes up the pipe, whatever happens
        os.close(read)
        try:
            phase = _first_phase(run)
            then_s = timed(lambda: then(phase.value))[0] if then is not None else None
            out = b"J" + json.dumps({"seconds": phase.seconds, "then_s": then_s,
                                     "peak_rss_bytes": phase.peak_rss_bytes}).encode()
        except BaseException as exc:  # raised again in the parent, as itself if it can be
            try:
                out = b"E" + pickle.dumps(exc)
            except Exception:
                out = b"J" + json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        os.write(write, out)
        os._exit(0)
    if not frozen_before:  # this process's collector as it was (a forkserver's stays frozen)
        gc.unfreeze()
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        text = fh.read()
    _, status = os.waitpid(pid, 0)
    if not text:
        _end_as(status)
    if text[:1] == b"E":  # the worker's exception (e.g. the format refused the model)
        raise pickle.loads(text[1:])
    got = json.loads(text[1:])
    if "error" in got:
        raise RuntimeError(f"in the worker (first-in-worker): {got['error']}")
    return Phase(seconds=got["seconds"], peak_rss_bytes=got["peak_rss_bytes"]), got["then_s"]
