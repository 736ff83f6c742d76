"""Shared fixtures: real runs of the harness, done once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.experiments import roundtrip
from harness.formats import FORMATS
from harness.models import MODELS
from harness.results import read
from harness.runner import RunOptions, run


def run_plan(output: Path, cells, timeout_s: float = 120.0, resume: bool = False) -> dict:
    """Run cells through the real runner into `output` and return the file's content."""
    run(cells, RunOptions(output=output, resume=resume, timeout_s=timeout_s, calibrate=False,
                          argv=["pytest"]))
    return read(output)


@pytest.fixture(scope="session")
def quick_results(tmp_path_factory) -> dict:
    """Every zoo model at `small` in every format: the quick profile with one repeat."""
    out = tmp_path_factory.mktemp("quick") / "results.json"
    cells = roundtrip.plan(list(MODELS), ["small"], list(FORMATS), {"repeat": 2, "seed": 0})
    return run_plan(out, cells)
