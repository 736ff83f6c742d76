"""Each protocol on a case whose answer is known: a phase that sleeps a known time, a phase
whose cost depends on what ran before it, what runs (and what does not) between samples, the
harness floor, and the protocol a results file records for each measure."""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import signal
import time

import pytest

from persistbench.measure.sampling import first_in_fork, floor, peak_samples, sample
from persistbench.results.protocols import (
    COLD_PAGE_CACHE,
    COLLECTED_BEFORE_EACH,
    FIRST_PREDICT_AFTER_LOAD,
    MEASURE_PROTOCOLS,
    PROTOCOLS,
    WARM_REPEATED,
    protocol_of,
)

SLEEP_S = 0.02


@pytest.mark.parametrize("protocol", [WARM_REPEATED, COLD_PAGE_CACHE, FIRST_PREDICT_AFTER_LOAD])
def test_a_phase_that_sleeps_a_known_time_reads_that_time(protocol):
    series = sample(protocol, lambda: time.sleep(SLEEP_S), repeat=5, budget_s=60.0,
                    between=lambda: None)
    assert len(series.samples) == 5 and len(series.warmups) == protocol.warmups
    assert all(SLEEP_S <= s < SLEEP_S * 10 for s in series.samples)  # generous: shared machine


class Cache:
    """A phase that is slow unless the run before it left its cache warm."""

    def __init__(self):
        self.warm = False

    def run(self):
        if not self.warm:
            time.sleep(SLEEP_S)
        self.warm = True

    def drop(self):
        self.warm = False


def test_warm_repeated_pays_the_cold_path_once_in_its_warm_up():
    cache = Cache()
    series = sample(WARM_REPEATED, cache.run, repeat=4, budget_s=60.0)
    assert series.first >= SLEEP_S
    assert max(series.samples) < SLEEP_S  # nothing between samples undoes the warm cache


def test_a_protocol_that_evicts_between_samples_pays_the_cold_path_every_time():
    cache = Cache()
    cache.run()
    series = sample(COLD_PAGE_CACHE, cache.run, repeat=4, budget_s=60.0, between=cache.drop)
    assert series.warmups == [] and min(series.samples) >= SLEEP_S


def test_between_runs_outside_the_timing():
    series = sample(COLD_PAGE_CACHE, lambda: None, repeat=3, budget_s=60.0,
                    between=lambda: time.sleep(SLEEP_S))
    assert max(series.samples) < SLEEP_S


def test_first_in_worker_is_the_first_act_of_a_fresh_worker_each_time():
    cache = Cache()
    phase, then_s = first_in_fork(cache.run, then=lambda _: time.sleep(SLEEP_S))
    assert phase.seconds >= SLEEP_S and then_s >= SLEEP_S  # the worker's cache was cold
    assert not cache.warm  # what the worker warmed stayed in the worker
    again, _ = first_in_fork(cache.run)
    assert again.seconds >= SLEEP_S  # a new worker each time: cold again
    cache.run()
    warmed, then_s = first_in_fork(cache.run)
    assert warmed.seconds < SLEEP_S and then_s is None  # a worker inherits its parent's state


def test_first_in_worker_takes_the_worker_s_peak_and_says_how_it_failed():
    def touch_new_pages():  # a fresh mapping: never memory the allocator already holds
        area = mmap.mmap(-1, 8 * 2**20)
        area.write(b"x" * len(area))
        return area

    phase, _ = first_in_fork(touch_new_pages)
    assert phase.peak_rss_bytes >= 6 * 2**20 and phase.value is None

    def fails():
        raise ValueError("no such file")

    with pytest.raises(ValueError, match="no such file"):  # raised as itself
        first_in_fork(fails)


@pytest.mark.parametrize("ending, exitcode", [(lambda: os.abort(), -signal.SIGABRT),
                                              (lambda: os._exit(3), 3)])
def test_a_worker_that_dies_ends_its_cell_the_same_way(ending, exitcode):
    # The cell's process (here a forked one) dies as the worker did, so the runner records
    # the cell as crashed with that signal or status.
    cell = multiprocessing.get_context("fork").Process(target=first_in_fork, args=(ending,))
    cell.start()
    cell.join(30)
    assert cell.exitcode == exitcode


def _collections(fn) -> int:
    seen = []

    def count(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    try:
        fn()
    finally:
        gc.callbacks.remove(count)
    return len(seen)


def test_warm_repeated_runs_no_collection_between_samples():
    assert _collections(lambda: sample(WARM_REPEATED, lambda: 1, 50, 60.0)) == 0


def test_peak_memory_samples_collect_before_each_run_and_are_separate():
    assert _collections(lambda: peak_samples(lambda: bytearray(2**20), 3)) >= 3


def test_the_floor_is_the_cost_of_timing_nothing():
    found = floor(WARM_REPEATED)
    assert len(found) == 25 and all(0 <= f < 1e-3 for f in found)
    evicted = floor(COLD_PAGE_CACHE, between=lambda: time.sleep(SLEEP_S), n=3)
    assert len(evicted) == 3 and max(evicted) < SLEEP_S  # the eviction is not timed


def test_a_recorded_protocol_wins_and_an_older_file_reads_as_what_it_was():
    assert protocol_of("load_s", {"protocols": {"load_s": "warm-repeated"}}) == "warm-repeated"
    assert protocol_of("load_s", {}) == COLLECTED_BEFORE_EACH.name
    assert protocol_of("start_load_s", {}) == "first-load-fresh-process"
    assert protocol_of("file_bytes", {"protocols": {}}) is None
    assert set(MEASURE_PROTOCOLS.values()) <= set(PROTOCOLS)
    for proto in PROTOCOLS.values():
        assert proto.name in proto.describe()


def test_each_sample_records_its_cpu_time_which_leaves_waiting_out():
    """Known answer: a run that sleeps 20 ms waits and uses next to no CPU; a run that
    spins until 20 ms have passed on the thread's CPU clock uses 20 ms of it, however long
    the machine makes it wait."""
    slept = sample(WARM_REPEATED, lambda: time.sleep(SLEEP_S), repeat=3, budget_s=60.0)
    assert len(slept.cpu) == len(slept.samples) == 3
    assert all(c < SLEEP_S / 4 <= SLEEP_S <= s
               for c, s in zip(slept.cpu, slept.samples, strict=True))

    def spin():
        until = time.thread_time() + SLEEP_S
        while time.thread_time() < until:
            pass

    spun = sample(WARM_REPEATED, spin, repeat=3, budget_s=60.0)
    assert all(SLEEP_S <= c < SLEEP_S * 1.5 and c <= s * 1.01
               for c, s in zip(spun.cpu, spun.samples, strict=True))
