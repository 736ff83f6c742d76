"""Three machine ids from real runs (one on the simulated macOS code paths) make one
cross-machine page, which a real browser opens without a console message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_browser import headless, is_blank

from persistbench.measure import methods
from persistbench.measure.machine import LABEL_VAR

MACHINES = {"box-a": {}, "box-b": {}, "mac-sim": {methods.SIMULATE_VAR: "darwin"}}


@pytest.fixture(scope="module")
def three_machines(tmp_path_factory) -> tuple[Path, list[Path]]:
    work = tmp_path_factory.mktemp("machines")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    files = []
    for label, extra in MACHINES.items():
        out = work / f"{label}.json"
        done = subprocess.run(
            [sys.executable, "-m", "persistbench", "run", "--models", "logreg,kneighbors",
             "--formats", "pickle-p5,joblib", "--repeat", "2", "--starts", "0",
             "--output", str(out)],
            cwd=work, capture_output=True, text=True, timeout=900,
            env={**env, LABEL_VAR: label, **extra})
        assert done.returncode == 0, done.stderr[-2000:]
        files.append(out)
    done = subprocess.run([sys.executable, "-m", "persistbench", "report", *map(str, files),
                           "--only", "--output", str(work / "site")], cwd=work,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return work / "site", files


@pytest.mark.slow
def test_simulated_macos_run_records_its_methods_and_says_what_it_could_not_measure(
        three_machines):
    _, files = three_machines
    mac = json.loads(files[2].read_text())
    assert mac["machine"]["machine_id"].startswith("mac-sim-")
    run_methods = mac["run"]["methods"]
    assert run_methods["simulated_platform"] == "darwin"
    assert run_methods["peak_memory"] == methods.PEAK_SAMPLED
    assert run_methods["start_method"] == "spawn"
    assert mac["run"]["start_method"] == "spawn"
    cell = next(c for c in mac["cells"] if c["status"] == "ok")
    assert cell["load_peak_rss_bytes"] >= 0 and cell["load_s"]["n"] == 2
    assert "posix_fadvise" in json.dumps(cell)  # cold loads: unsupported, with the reason
    linux = json.loads(files[0].read_text())["run"]["methods"]
    assert linux["peak_memory"] == methods.PEAK_VMHWM and "simulated_platform" not in linux


@pytest.mark.slow
def test_the_cross_machine_page_puts_three_machines_side_by_side(three_machines, chromium,
                                                                   tmp_path):
    site, _ = three_machines
    page = site / "machines.html"
    html = page.read_text()
    for label in MACHINES:
        assert f">{label}-" in html
    assert "% of page-cache read" in html  # efficiency against each machine's calibration
    assert "never as a ratio" in html and "rss-sampled-1ms" in html  # peaks: marked apart
    assert 'href="machines.html"' in (site / "index.html").read_text()
    messages, shot = headless(chromium, page, tmp_path)
    assert messages == [] and not is_blank(shot)
