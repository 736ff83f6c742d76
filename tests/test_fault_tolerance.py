"""A real `persistbench run`, killed with SIGKILL at several points and resumed each time.

After every kill the results file must be valid (persistbench.results.schema.read validates it
against the schema); at the end every planned cell must be there exactly once, and every cell
recorded before a kill must be unchanged (kept, not measured again). The security
experiment is used because its cells need no trained model, so each run is short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persistbench.experiments import security
from persistbench.results.schema import ResultsError, read
from persistbench.sources.formats import FORMATS

KILL_AFTER_CELLS = (0, 3, 7)  # 0: as soon as the file exists


def _start(out: Path, resume: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "persistbench", "run", "--experiments", "security",
            "--no-calibrate", "--timeout", "60", "--output", str(out)]
    return subprocess.Popen(argv + (["--resume"] if resume else []), cwd=out.parent,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _cells(out: Path) -> list[dict] | None:
    try:
        return read(out)["cells"]
    except ResultsError:  # not written yet
        return None


def _kill_when(proc: subprocess.Popen, out: Path, cells: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        found = _cells(out)
        if found is not None and len(found) >= cells:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read()}"
    os.killpg(proc.pid, signal.SIGKILL)  # the runner, its forkserver and the cell in flight
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_and_repeats_nothing(tmp_path):
    out = tmp_path / "results.json"
    planned = {c.cell_id for c in security.plan([], [], list(FORMATS), {})}
    kept: dict[str, dict] = {}
    for index, cells in enumerate(KILL_AFTER_CELLS):
        proc = _start(out, resume=index > 0)
        # four planned cells at least stay unmeasured: the run must not reach its end (state
        # "finished", then seconds of summary and report) while the kill is on its way
        _kill_when(proc, out, min(len(kept) + cells, len(planned) - 4) if cells else 0)
        data = read(out)  # valid JSON, valid schema, after a kill at this point
        ids = [c["cell_id"] for c in data["cells"]]
        assert len(ids) == len(set(ids)), "a cell was recorded twice"
        assert set(ids) <= planned
        for cell in data["cells"]:
            if cell["cell_id"] in kept:
                assert cell == kept[cell["cell_id"]], "a finished cell was measured again"
            kept[cell["cell_id"]] = cell
        assert data["run"]["state"] == "running"  # killed: nobody marked it finished
    assert len(kept) < len(planned), "the kills came too late to test resuming"

    proc = _start(out, resume=True)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    data = read(out)
    ids = [c["cell_id"] for c in data["cells"]]
    assert sorted(ids) == sorted(planned)
    for cell in data["cells"]:
        if cell["cell_id"] in kept:
            assert cell == kept[cell["cell_id"]]
    assert data["run"]["state"] == "finished"
    assert len(data["run"]["resumed"]) == len(KILL_AFTER_CELLS)
