"""How noisy the machine was during a run, so a noisy run can be told from a quiet one.

Between-run variance dominates on a shared machine: two runs minutes apart differ by up to
2x on some timings. The load average at start and end, the CPUs the run may use, the
container's CPU quota and the share of time the hypervisor stole say why, where readable.
Every reading is optional: what the platform does not expose is None, never a guess.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _steal_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot, from the first line of /proc/stat."""
    try:
        fields = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu" or len(fields) < 9:
        return None
    ticks = [int(v) for v in fields[1:]]
    # guest time (fields 9, 10) is already counted in user and nice
    return ticks[7], sum(ticks[:8])


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the container may use (quota / period), None when unlimited or unreadable.

    cgroup v2 `cpu.max` ("max 100000" or "200000 100000"), else v1 `cpu.cfs_quota_us`.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 else quota_us / period_us


def noise_snapshot() -> dict:
    """One reading: load averages, usable CPUs, CPU quota and the steal counters."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    steal = _steal_ticks()
    return {"time_monotonic": time.monotonic(), "load_average": load,
            "cpu_affinity": affinity, "cpu_quota": cpu_quota(),
            "steal_ticks": None if steal is None else list(steal)}


def noise_summary(start: dict | None, end: dict) -> dict:
    """Start and end readings, and the share of CPU time stolen in between (None: unknown)."""
    stolen = None
    if start and start.get("steal_ticks") and end.get("steal_ticks"):
        steal = end["steal_ticks"][0] - start["steal_ticks"][0]
        total = end["steal_ticks"][1] - start["steal_ticks"][1]
        stolen = steal / total if total > 0 else None
    return {"start": start, "end": end, "steal_fraction": stolen}
