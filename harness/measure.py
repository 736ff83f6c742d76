"""Timers, per-phase peak memory, page-cache eviction and process memory.

Peak memory is measured per phase, not per process: the process-lifetime peak
(`ru_maxrss`, asv's `peakmem_`) is dominated by imports and inherited across fork, so it
hides what a dump or a load really needs. On Linux the high-water mark is reset through
`/proc/self/clear_refs` right before the phase.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"


def _status_bytes(field: str) -> int:
    with open(STATUS) as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss_bytes() -> int:
    """Resident set size now (psutil reads /proc/self/statm on Linux; imported here because
    the compat environments import this module without psutil)."""
    import psutil

    return psutil.Process().memory_info().rss


def _can_reset_hwm() -> bool:
    try:
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


PEAK_METHOD = "clear_refs-vmhwm" if _can_reset_hwm() else "ru_maxrss-lifetime"


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class Phase:
    """One measured run of a phase: wall time, peak RSS above the start, and its value."""

    seconds: float
    peak_rss_bytes: int
    value: Any = None


def measure_phase(fn: Callable[[], Any]) -> Phase:
    """Run fn once; peak = the phase's RSS high-water mark minus the RSS just before it.

    Without clear_refs (not Linux) the lifetime `ru_maxrss` is used, which is only right
    when the phase is the biggest thing the process has done; PEAK_METHOD records which.
    """
    before = rss_bytes()
    if PEAK_METHOD == "clear_refs-vmhwm":
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    high = _status_bytes("VmHWM:") if PEAK_METHOD == "clear_refs-vmhwm" else _maxrss_bytes()
    return Phase(seconds=seconds, peak_rss_bytes=max(0, high - before), value=value)


def stats(samples: list[float]) -> dict:
    """The summary every timing carries; raw samples are kept beside it."""
    if not samples:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "n": len(samples),
    }


def evict_from_page_cache(path: Path) -> None:
    """fsync then POSIX_FADV_DONTNEED: the next read comes from the device, no root needed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cold_cache_supported() -> bool:
    return hasattr(os, "posix_fadvise")


MEMORY_CAP_FRACTION = 0.8


def cap_address_space(limit_bytes: int | None = None) -> int | None:
    """Make a runaway allocation fail in this process instead of summoning the OOM killer.

    The kernel's OOM killer picks its victim machine-wide: a cell that asks for more than
    the machine has could take down the harness or an unrelated program. With RLIMIT_AS the
    allocation fails inside the cell, which then ends as `error` or `crashed` with a reason.
    Default: 80 % of physical memory (address space, so memory maps count too).
    """
    import psutil

    limit = limit_bytes or int(MEMORY_CAP_FRACTION * psutil.virtual_memory().total)
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):  # not settable here (some platforms): run uncapped
        return None
    return limit


def process_memory(pid: int) -> dict:
    """RSS, USS and PSS of a process (PSS splits each shared page among its sharers)."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return {
        "rss_bytes": int(info.rss),
        "uss_bytes": int(info.uss),
        "pss_bytes": int(getattr(info, "pss", info.uss)),
    }
