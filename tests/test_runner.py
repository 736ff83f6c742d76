"""Failures become results, the run goes on, and resume neither loses nor repeats a cell."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_plan

from persistbench.experiments import roundtrip


@pytest.mark.slow
def test_raise_hang_and_abort_are_recorded_and_the_run_goes_on(tmp_path):
    models = ["known_models:raises", "known_models:hangs", "known_models:aborts", "logreg"]
    cells = []
    for model in models:
        size = "small" if model == "logreg" else "custom"
        cells += roundtrip.plan([model], [size], ["pickle"], {"repeat": 1, "seed": 0, "starts": 0})
    results = run_plan(tmp_path / "r.json", cells, timeout_s=20)
    status = {c["model"]: c for c in results["cells"]}
    assert status["known_models:raises"]["status"] == "error"
    assert "planted failure" in status["known_models:raises"]["reason"]
    assert status["known_models:hangs"]["status"] == "timeout"
    assert status["known_models:aborts"]["status"] == "crashed"
    assert status["known_models:aborts"]["signal"] == "SIGABRT"
    assert status["logreg"]["status"] == "ok"
    # what was measured before the failure is kept: the dump of the hanging model worked
    assert status["known_models:hangs"]["dump_s"]["n"] == 1
    assert results["run"]["state"] == "finished"


def test_resume_neither_loses_nor_repeats(tmp_path):
    out = tmp_path / "r.json"
    cells = roundtrip.plan(["logreg", "ridge"], ["small"], ["pickle", "joblib"],
                           {"repeat": 1, "seed": 0, "starts": 0})
    first = run_plan(out, cells[:2])
    before = {c["cell_id"]: c for c in first["cells"]}
    second = run_plan(out, cells, resume=True)
    ids = [c["cell_id"] for c in second["cells"]]
    assert sorted(ids) == sorted(c.cell_id for c in cells)
    assert len(ids) == len(set(ids))
    for cell in second["cells"]:  # the first run's cells are untouched, not re-measured
        if cell["cell_id"] in before:
            assert cell == before[cell["cell_id"]]
    assert len(second["run"]["resumed"]) == 1
    json.loads(out.read_text())


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_measured(tmp_path):
    """SIGINT in the middle of a run: ends as interrupted, a valid file, state 'interrupted'."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from persistbench.results.schema import read

    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "persistbench", "run", "--models", "logreg,ridge,svc",
         "--repeat", "1",
         "--starts", "0", "--no-calibrate", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # A job started in the background of a shell inherits SIGINT ignored; a user's
        # terminal delivers it, so the run gets the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    def three_cells() -> bool:
        return out.exists() and len(read(out)["cells"]) >= 3

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not three_cells():
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before three cells: {proc.stderr.read()}"
    assert three_cells(), "three cells took over 120 s"
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == -signal.SIGINT
    data = read(out)
    assert data["run"]["state"] == "interrupted"
    assert len(data["cells"]) >= 3
    assert "--resume" in proc.stderr.read()


def test_work_folders_of_killed_runs_are_swept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    abandoned = tmp_path / f".persistbench-{dead}-abc"
    abandoned.mkdir()
    (abandoned / "payload.pkl").write_bytes(b"x")
    alive = tmp_path / f".persistbench-{os.getpid()}-def"
    alive.mkdir()
    run_plan(tmp_path / "r.json", roundtrip.plan(["logreg"], ["small"], ["pickle"],
                                                 {"repeat": 1, "seed": 0, "starts": 0}))
    assert not abandoned.exists()
    assert alive.exists()


def test_a_runaway_allocation_fails_inside_the_cell(tmp_path):
    """The address-space cap turns 'more memory than the machine has' into a recorded error."""
    cells = roundtrip.plan(["known_models:hoards"], ["custom"], ["pickle"],
                           {"repeat": 1, "seed": 0, "starts": 0})
    results = run_plan(tmp_path / "r.json", cells)
    (cell,) = results["cells"]
    assert cell["status"] in ("error", "crashed")
    assert "MemoryError" in cell["reason"] or "SIG" in cell["reason"]
