"""Timers, per-phase peak memory, page-cache eviction and process memory.

Peak memory is measured per phase, not per process: the process-lifetime peak
(`ru_maxrss`, asv's `peakmem_`) is dominated by imports and inherited across fork, so it
hides what a dump or a load really needs. On Linux the high-water mark is reset through
`/proc/self/clear_refs` right before the phase; elsewhere a thread samples the RSS during
the phase. Which platform facts apply comes from `persistbench.measure.methods.active()`, so a
simulated platform takes the same paths the real one would.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persistbench.measure.methods import PEAK_SAMPLED, PEAK_VMHWM, active

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"


def status_bytes(field: str) -> int:
    with open(STATUS) as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


STATM = "/proc/self/statm"
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size now: one read of /proc/self/statm where there is one, else psutil
    (imported here because the compat environments import this module without psutil).

    It runs between a load and the first prediction it times (`first-predict-after-load`),
    so it must do next to nothing: psutil's `Process()` reads and allocates far more."""
    if os.path.exists(STATM):
        fd = os.open(STATM, os.O_RDONLY)
        try:
            return int(os.read(fd, 200).split()[1]) * PAGE_BYTES
        finally:
            os.close(fd)
    import psutil

    return psutil.Process().memory_info().rss


PEAK_METHOD = PEAK_VMHWM if active().can_reset_hwm else PEAK_SAMPLED
SAMPLE_INTERVAL_S = 0.001


class PeakSampler(threading.Thread):
    """RSS read every millisecond while a phase runs, where no high-water mark can be reset.

    Each sample is this process's own RSS, so the peak belongs to the phase, not to the
    process's lifetime (which `ru_maxrss` would give). A spike shorter than the interval (or
    than a stretch of C code holding the GIL) can be missed: the method is recorded as
    sampled, never passed off as the kernel's mark.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self._process = psutil.Process()
        self._stop_event = threading.Event()
        self.peak = self._process.memory_info().rss

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def finish(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self._process.memory_info().rss)


@dataclass
class Phase:
    """One measured run of a phase: wall time, peak RSS above the start, and its value."""

    seconds: float
    peak_rss_bytes: int
    value: Any = None
    rss_delta_bytes: int = 0  # RSS after minus before: what the phase left resident


@functools.cache
def libc_handle():
    """The C library, looked up once per process: `find_library` runs `ldconfig -p` in a
    subprocess (1-2 ms), which every eviction and trim paid before."""
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def release_free_memory() -> bool:
    """Hand memory the allocator keeps after `free` back to the kernel (glibc `malloc_trim`).

    Cells run with the allocator's default settings, as a user's process does. glibc then
    keeps freed blocks for reuse, so a phase repeated in one process would find the last
    sample's memory already resident and look cheaper than it is. Trimming before each
    sample (outside the timed region) makes every sample's peak start from live memory
    only. False where there is no glibc (the peak then relies on the allocator alone).
    """
    import ctypes

    try:
        trim = libc_handle().malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


ALLOCATOR_VARIABLES = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTHONMALLOC",
                       "JEMALLOC_", "MIMALLOC_", "TCMALLOC_")


def allocator(environ: dict[str, str] | None = None) -> dict:
    """The allocator every cell and server runs under: the default unless the user tuned it.

    The harness sets nothing itself; any variable that changes malloc (glibc's MALLOC_*
    thresholds, GLIBC_TUNABLES, a preloaded allocator, PYTHONMALLOC) that the user exported
    is inherited by every child, so it is recorded with the results.
    """
    import platform

    environ = dict(os.environ if environ is None else environ)
    tuned = {k: v for k, v in sorted(environ.items()) if k.startswith(ALLOCATOR_VARIABLES)}
    libc, libc_version = platform.libc_ver()
    return {"name": "default" if not tuned else "tuned", "environment": tuned,
            "libc": f"{libc} {libc_version}".strip() or None}


def measure_phase(fn: Callable[[], Any], release: bool = True) -> Phase:
    """Run fn once; peak = the phase's RSS high-water mark minus the RSS just before it.

    The mark is the kernel's (clear_refs + VmHWM) on Linux, sampled elsewhere; PEAK_METHOD
    records which. `release` trims the allocator first (`release_free_memory`); a process's
    first run has nothing of a previous run to release, and goes without.
    """
    if release:
        release_free_memory()
    before = rss_bytes()
    sampler = None
    if PEAK_METHOD == PEAK_VMHWM:
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
    else:
        sampler = PeakSampler()
        sampler.start()
    start = time.perf_counter()
    try:
        value = fn()
    finally:
        seconds = time.perf_counter() - start
        high = status_bytes("VmHWM:") if sampler is None else sampler.finish()
    return Phase(seconds=seconds, peak_rss_bytes=max(0, high - before), value=value,
                 rss_delta_bytes=rss_bytes() - before)


def stats(samples: list[float]) -> dict:
    """The summary every timing carries; raw samples are kept beside it."""
    if not samples:
        return {"min": None, "median": None, "max": None, "n": 0, "samples": []}
    return {
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": list(samples),
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
    return active().has_fadvise


def resident_fraction(path: Path) -> float | None:
    """Share of the file's pages in the page cache right now (mincore on a fresh mapping).

    Mapping a file and asking `mincore` reads no data, so it does not change the answer.
    None where it cannot be asked (no mincore, empty file).
    """
    import ctypes
    import mmap

    size = os.path.getsize(path)
    if size == 0 or not sys.platform.startswith(("linux", "darwin", "freebsd")):
        return None
    libc = libc_handle()
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec) / pages


COLD_MAX_RESIDENT = 0.05  # more than this still cached after eviction: not a cold read


def evict_verified(path: Path) -> tuple[float | None, str | None]:
    """Evict the file, then check it worked: (resident fraction, why it is not cold or None).

    On tmpfs (and some overlay filesystems) POSIX_FADV_DONTNEED leaves every page in
    memory, so a "cold" read would be a warm one; that is reported instead of measured.
    """
    if not cold_cache_supported():
        return None, "no posix_fadvise on this platform: the page cache cannot be evicted"
    evict_from_page_cache(path)
    fraction = resident_fraction(path)
    if fraction is not None and fraction > COLD_MAX_RESIDENT:
        return fraction, (f"eviction did not work here: {fraction:.0%} of the file's pages "
                          "stayed in memory after fsync + POSIX_FADV_DONTNEED (tmpfs and "
                          "some overlay filesystems keep files in memory)")
    return fraction, None


MEMORY_CAP_FRACTION = 0.8


def cap_address_space(limit_bytes: int | None = None) -> int | None:
    """Make a runaway allocation fail in this process instead of summoning the OOM killer.

    The kernel's OOM killer picks its victim machine-wide: a cell that asks for more than
    the machine has could take down the harness or an unrelated program. With RLIMIT_AS the
    allocation fails inside the cell, which then ends as `error` or `crashed` with a reason.
    Default: 80 % of physical memory (address space, so memory maps count too).
    """
    if not active().can_cap_address_space:
        return None  # `run.methods["memory_cap"]` says the run was uncapped
    import resource

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


USS_TIMEOUT_S = 10.0


def process_memory(pid: int) -> dict:
    """RSS, USS and PSS of a process (PSS splits each shared page among its sharers).

    Without PSS (macOS) `pss_bytes` is None rather than USS under PSS's name. psutil's USS
    goes through `task_for_pid` on macOS, which can block forever: it gets a timeout, and a
    USS that did not come is None with the reason.
    """
    import psutil

    process = psutil.Process(pid)
    if active().has_pss:
        info = process.memory_full_info()
        return {"rss_bytes": int(info.rss), "uss_bytes": int(info.uss),
                "pss_bytes": int(info.pss)}
    found: dict = {"rss_bytes": int(process.memory_info().rss), "uss_bytes": None,
                   "pss_bytes": None}

    def read_uss() -> None:
        try:
            found["uss_bytes"] = int(process.memory_full_info().uss)
        except (psutil.AccessDenied, psutil.NoSuchProcess) as exc:
            found["uss_reason"] = f"{type(exc).__name__}: {exc}"

    reader = threading.Thread(target=read_uss, daemon=True)
    reader.start()
    reader.join(USS_TIMEOUT_S)
    if reader.is_alive():
        found["uss_reason"] = f"psutil's USS did not answer within {USS_TIMEOUT_S:g} s"
    return found
