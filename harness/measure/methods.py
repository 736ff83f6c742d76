"""How each kind of measure is taken on this platform, so figures taken differently never meet.

A peak RSS read from a reset high-water mark and one sampled from outside are both "peak
memory", but not the same number; a "cold" load after a verified eviction and one after a
plain fsync are not the same experiment. Each run records its methods (`run.methods`); the
report prints them beside the figures, and `compare` and the cross-machine page show figures
taken with different methods side by side, marked, never as a ratio.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cache

PEAK_VMHWM = "clear_refs-vmhwm"
PEAK_SAMPLED = "rss-sampled-1ms"


@dataclass(frozen=True)
class PlatformFacts:
    """What the platform allows; probed once, or given by a test to simulate another one."""

    system: str  # sys.platform
    can_reset_hwm: bool  # Linux >= 4.0: /proc/self/clear_refs resets VmHWM
    has_fadvise: bool  # os.posix_fadvise exists (Linux; not macOS)
    has_pss: bool  # /proc/<pid>/smaps_rollup gives PSS (Linux)
    can_cap_address_space: bool  # RLIMIT_AS can be lowered (not on macOS)


SIMULATE_VAR = "PERSISTBENCH_SIMULATE_PLATFORM"
# What the harness knows of macOS: no clear_refs, no posix_fadvise, no PSS, RLIMIT_AS refused.
# Simulating it on Linux runs those code paths for real (the tests do); `run.methods` says so.
SIMULATED = {"darwin": PlatformFacts(system="darwin", can_reset_hwm=False, has_fadvise=False,
                                     has_pss=False, can_cap_address_space=False)}


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _can_cap_address_space() -> bool:
    try:
        import resource
    except ImportError:  # Windows
        return False
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ValueError, OSError):
        return False
    return True


def probe() -> PlatformFacts:
    return PlatformFacts(
        system=sys.platform,
        can_reset_hwm=_can_reset_hwm(),
        has_fadvise=hasattr(os, "posix_fadvise"),
        has_pss=os.path.exists("/proc/self/smaps_rollup"),
        can_cap_address_space=_can_cap_address_space(),
    )


@cache
def active() -> PlatformFacts:
    """The facts every measurement of this process follows: probed, or simulated on request.

    Children inherit the variable, so a simulated run is simulated in every cell and server.
    """
    name = os.environ.get(SIMULATE_VAR, "").strip()
    if not name:
        return probe()
    if name not in SIMULATED:
        raise ValueError(f"{SIMULATE_VAR}={name!r} is not a platform persistbench can "
                         f"simulate; use one of {', '.join(SIMULATED)} or unset it")
    return SIMULATED[name]


def start_method(facts: PlatformFacts) -> str:
    """fork after Apple's frameworks are loaded is unsafe: spawn there, forkserver elsewhere."""
    return "spawn" if facts.system == "darwin" else "forkserver"


def methods(facts: PlatformFacts, allocator: str = "default") -> dict[str, str]:
    """The method of each family on this platform, as recorded in `run.methods`."""
    recorded = {
        "peak_memory": PEAK_VMHWM if facts.can_reset_hwm else PEAK_SAMPLED,
        "cold_cache": ("posix_fadvise-dontneed, verified with mincore" if facts.has_fadvise
                       else "unsupported: no posix_fadvise (cold loads are not measured)"),
        "shared_memory": "pss" if facts.has_pss else "uss-only (no PSS on this platform)",
        "memory_cap": ("rlimit-as" if facts.can_cap_address_space
                       else "none (RLIMIT_AS cannot be set here)"),
        "start_method": start_method(facts),
        "allocator": allocator,
    }
    if facts != probe():
        recorded["simulated_platform"] = facts.system
    return recorded
