"""CPU model and filesystem detection (py-cpuinfo, psutil) on this machine."""

from __future__ import annotations

from pathlib import Path

import psutil

from persistbench.measure.machine import _cpu_model, _filesystem


def test_the_filesystem_is_the_deepest_mount_holding_the_path(tmp_path):
    found = _filesystem(tmp_path)
    assert tmp_path.resolve().is_relative_to(found["mount"])
    mounts = {p.mountpoint: p.fstype for p in psutil.disk_partitions(all=True)}
    assert mounts[found["mount"]] == found["type"]
    deeper = [m for m in mounts if tmp_path.resolve().is_relative_to(m)
              and len(m) > len(found["mount"])]
    assert not deeper
    assert _filesystem(Path("/"))["mount"] == "/"


def test_the_cpu_model_is_named():
    assert _cpu_model().strip()
