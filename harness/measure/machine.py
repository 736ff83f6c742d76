"""Machine fingerprint and a short calibration of the machine's own limits.

Absolute seconds cannot be compared across machines; a load that reaches 40 % of the
machine's page-cache bandwidth can. The calibration gives every result that denominator.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from persistbench.measure.emulation import emulation
from persistbench.measure.phases import evict_verified
from persistbench.results.identity import machine_id

PACKAGES = (
    "persistbench", "numpy", "scipy", "scikit-learn", "joblib", "cloudpickle", "skops",
    "skl2onnx", "onnx", "onnxruntime", "psutil", "threadpoolctl", "lz4", "rich", "jinja2",
    "matplotlib", "jsonschema", "asv", "pytest-benchmark", "memray",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


@functools.cache
def _cpu_model() -> str:
    """py-cpuinfo's brand string (Linux, macOS, Windows; x86 and ARM). It probes in a child
    interpreter, about a second, so once per process."""
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    return info.get("brand_raw") or info.get("hardware_raw") or platform.processor() \
        or platform.machine()


def _filesystem(path: Path) -> dict:
    """The mount that holds `path`: its type matters for cold reads and fsync."""
    import psutil

    target = path.resolve()
    best = {"mount": "", "type": "unknown", "device": ""}
    for part in psutil.disk_partitions(all=True):
        if target.is_relative_to(part.mountpoint) and len(part.mountpoint) >= len(best["mount"]):
            best = {"mount": part.mountpoint, "type": part.fstype, "device": part.device}
    return best


def _threadpools() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "num_threads", "version", "threading_layer",
            "architecture")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def fingerprint(output_dir: Path) -> dict:
    import psutil

    uname = platform.uname()
    fp = {
        "hostname": socket.gethostname(),
        "arch": uname.machine,
        "cpu_model": _cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_bytes": int(psutil.virtual_memory().total),
        "os": uname.system,
        "kernel": uname.release,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "threadpools": _threadpools(),
        "filesystem": _filesystem(output_dir),
        "label": os.environ.get(LABEL_VAR, "").strip() or None,
        "emulated": emulation(),  # not the CPU's timings: kept out of cross-machine ratios
    }
    fp["machine_id"] = machine_id(fp)
    return fp


LABEL_VAR = "PERSISTBENCH_MACHINE_LABEL"


def _best_rate(nbytes: int, fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best


CALIBRATION_BYTES = 64 * 2**20


def calibrate(directory: Path, nbytes: int = CALIBRATION_BYTES) -> dict:
    """Memory copy, page-cache read, cold read and write+fsync bandwidths in bytes/s.

    64 MiB, the best of several runs: 256 MiB took 3.5-4.9 s of every run here (most of it
    writing and fsyncing), against 0.7 s, for bandwidths within the spread of either size
    on a shared machine.
    """
    src = np.frombuffer(np.random.default_rng(0).bytes(nbytes), dtype=np.uint8)
    dst = np.empty_like(src)
    copy_bps = _best_rate(nbytes, lambda: np.copyto(dst, src), repeats=5)
    buf = bytearray(nbytes)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".calibrate-", delete=False) as fh:
        path = Path(fh.name)
    try:
        def write_fsync():
            with open(path, "wb") as out:
                out.write(src.data)
                out.flush()
                os.fsync(out.fileno())

        def read_all():
            with open(path, "rb", buffering=0) as inp:
                inp.readinto(buf)

        write_bps = _best_rate(nbytes, write_fsync, repeats=2)
        read_all()
        warm_bps = _best_rate(nbytes, read_all, repeats=5)
        cold, cold_unsupported = [], None
        for _ in range(3):
            _, cold_unsupported = evict_verified(path)
            if cold_unsupported:
                break
            cold.append(_best_rate(nbytes, read_all, repeats=1))
    finally:
        path.unlink(missing_ok=True)
    out = {
        "bytes": nbytes,
        "memory_copy_bps": copy_bps,
        "page_cache_read_bps": warm_bps,
        "cold_read_bps": max(cold) if cold else None,
        "write_fsync_bps": write_bps,
    }
    if cold_unsupported:
        out["cold_read_unsupported_reason"] = cold_unsupported
    return out


def describe(output_dir: Path, calibration: bool = True) -> dict:
    info = fingerprint(output_dir)
    info["calibration"] = calibrate(output_dir) if calibration else None
    return info

