"""pytest-benchmark suite of persistbench: `pytest benchmarks/pytest --benchmark-only`.

The same front as the asv suites (`persistbench.schedule.fronts`), timed by pytest-benchmark
instead. The
grid follows PERSISTBENCH_PROFILE (quick, default, large; unset: quick). This directory has
no `__init__.py`, so asv, which imports `benchmarks/` as its package, never collects it, and
the project's `pytest` run (testpaths: tests) never collects it either.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from persistbench.sources.models import UsageError


def pytest_configure(config: pytest.Config) -> None:
    from persistbench.schedule.profiles import from_env

    try:
        from_env()
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """The harness's own fingerprint, so the JSON converts into a results file unchanged."""
    from persistbench import __version__
    from persistbench.measure.machine import describe
    from persistbench.measure.phases import PEAK_METHOD
    from persistbench.schedule.profiles import from_env

    machine_info["persistbench"] = {
        "machine": describe(Path(tempfile.gettempdir())),  # fingerprint + calibration
        "profile": from_env(),
        "harness_version": __version__,
        "peak_memory_method": PEAK_METHOD,
    }


@pytest.fixture(scope="session")
def cell_records() -> dict:
    """The harness's roundtrip records, measured once per cell for all of its tests."""
    return {}
