"""Shared fixtures: real runs of the harness, done once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from persistbench.experiments import roundtrip
from persistbench.results.schema import read
from persistbench.schedule.runner import RunOptions, run
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import MODELS


def run_plan(output: Path, cells, timeout_s: float = 120.0, resume: bool = False) -> dict:
    """Run cells through the real runner into `output` and return the file's content."""
    run(cells, RunOptions(output=output, resume=resume, timeout_s=timeout_s, calibrate=False,
                          argv=["pytest"]))
    return read(output)


@pytest.fixture(scope="session")
def quick_results(tmp_path_factory) -> dict:
    """Every zoo model at `small` in every format: the quick profile with one repeat."""
    out = tmp_path_factory.mktemp("quick") / "results.json"
    # Server starts (3 fresh interpreters per cell) are checked in test_measure_truth.py
    cells = roundtrip.plan(list(MODELS), ["small"], list(FORMATS),
                           {"repeat": 2, "seed": 0, "starts": 0})
    return run_plan(out, cells)


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory) -> dict:
    """Two real CLI runs on one machine, as a user types them, for the report tests.

    Run 1 (calibrated): round trips of a plain, an array-heavy and an unpicklable model.
    Run 2: sharing, inference, footprint of one model, and the security experiment's crafted
    files (an experiment without a view of its own). Each `run` writes its report.
    """
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("report-runs")
    runs = [
        ["--models", "logreg,kneighbors,custom_code", "--repeat", "2", "--starts", "0",
         "--formats", "pickle,pickle-p5,joblib-mmap,cloudpickle,skops,onnx"],
        ["--models", "logreg", "--formats", "joblib,joblib-mmap,onnx", "--repeat", "2",
         "--experiments", "sharing,inference,footprint,security", "--processes", "2",
         "--no-calibrate"],
    ]
    out: dict = {"dir": work, "results": [], "stdout": []}
    for i, argv in enumerate(runs, 1):
        done = subprocess.run([sys.executable, "-m", "persistbench", "run", *argv,
                               "--output", f"run{i}.json"], cwd=work, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        out["results"].append(work / f"run{i}.json")
        out["stdout"].append(done.stdout)
    return out


REQUIRE_BROWSER = "PERSISTBENCH_REQUIRE_BROWSER"
# Fixtures that run real measurements of several models (minutes on a busy machine): every
# test that uses one is slow, so `-m "not slow"` leaves them out without a mark per test.
SLOW_FIXTURES = {"quick_results", "report_runs", "pytest_benchmark_json", "security_run",
                 "compat_run", "zoo_files", "records"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium. Missing, the browser checks are skipped with this reason
    (shown by `-rs`, on in pytest's options), unless PERSISTBENCH_REQUIRE_BROWSER=1 (CI):
    then a missing browser fails, so CI cannot pass without having looked at the page."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = ("Chromium is not installed: the report's browser checks did not run "
               "(apt-get install chromium; CI sets PERSISTBENCH_REQUIRE_BROWSER=1)")
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{message}, but {REQUIRE_BROWSER}=1 requires them")
    pytest.skip(message)
