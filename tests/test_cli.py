"""The command line: bad usage exits 2 with one line naming the valid choices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def persistbench(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "persistbench", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["run", "--models", "nope"], "valid: logreg"),
    (["run", "--formats", "pickel"], "valid: pickle"),
    (["run", "--sizes", "huge"], "valid: small, medium, large"),
    (["run", "--experiments", "warp"], "valid: roundtrip"),
    (["run", "--profile", "fast"], "invalid choice"),
    (["run", "--repeat", "0"], "must be greater than 0"),
    (["run", "--timeout", "abc"], "not a number"),
    (["run", "--model", "no_such_module_xyz:f"], "cannot import"),
    (["run", "--model", "justaname"], "package.module:factory"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_usage_exits_2_with_one_line(args, needle):
    proc = persistbench(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]


def test_existing_output_needs_resume(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}")
    proc = persistbench("run", "--models", "logreg", "--output", str(out))
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_list_names_everything():
    proc = persistbench("list")
    assert proc.returncode == 0
    for name in ("logreg", "kneighbors", "joblib-mmap", "skops", "onnx", "roundtrip", "quick"):
        assert name in proc.stdout


@pytest.mark.slow
def test_run_with_a_user_model_writes_results(tmp_path):
    out = tmp_path / "r.json"
    proc = persistbench("run", "--model", "known_models:raises", "--formats", "pickle,skops",
                        "--repeat", "1", "--no-calibrate", "--output", str(out),
                        cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from persistbench.results.schema import read

    cells = read(out)["cells"]
    assert {c["format"] for c in cells} == {"pickle", "skops"}
    assert all(c["model"] == "known_models:raises" and c["size"] == "custom" for c in cells)


@pytest.mark.parametrize("command, option", [
    (["run", "--models", "logreg", "--output", "{blocked}/r.json"], "--output"),
    (["run", "--models", "logreg", "--output", "{folder}"], "--output"),
    (["report", "{missing}", "--output", "{blocked}/reports"], "--output"),
    (["compare", "{missing}", "{missing}", "--html", "{blocked}/c.html"], "--html"),
])
def test_unwritable_output_is_one_line_before_any_work(tmp_path, command, option):
    """A path under a regular file cannot be created, even by root; a folder is no file."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    args = [a.format(blocked=tmp_path / "blocked", folder=tmp_path / "folder",
                     missing=tmp_path / "missing.json") for a in command]
    proc = persistbench(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], proc.stderr


CTRL_C_AS_THE_FORKSERVER_SPAWNS = """
import os, signal, sys, time
# A shell that starts a job in the background hands it SIGINT ignored; a terminal does not.
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy  # its BLAS worker threads exist in a real run: a Ctrl-C may land on one
from multiprocessing import util
from persistbench.schedule import children

spawn = util.spawnv_passfds

def spawn_then_ctrl_c(exe, args, fds):
    pid = spawn(exe, args, fds)
    if "multiprocessing.forkserver" in args[-1]:
        os.kill(os.getpid(), signal.SIGINT)  # process-directed, as a terminal's Ctrl-C
    return pid

util.spawnv_passfds = spawn_then_ctrl_c
try:
    children.context()
    for _ in range(100):  # the thread that took the signal may set Python's flag later,
        time.sleep(0.1)  # by seconds on a loaded machine
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


def test_ctrl_c_while_the_forkserver_starts_is_not_lost():
    """The forkserver starts deaf to Ctrl-C; a Ctrl-C arriving meanwhile must still reach
    the harness. Ignoring SIGINT for that window lost it: the resource tracker's start
    unblocks SIGINT again, and any other thread (BLAS's) takes a signal the main thread
    blocks, so the run went on and exited 0."""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_AS_THE_FORKSERVER_SPAWNS],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr


def _wait_until_loaded(pid: int, library: str) -> None:
    """Until `library` is mapped into the process: a moment known to be inside its imports,
    where a fixed delay could still be in the interpreter's start-up on a busy machine."""
    import time

    deadline = time.monotonic() + 60
    while library not in Path(f"/proc/{pid}/maps").read_text():
        assert time.monotonic() < deadline, f"{library} was never loaded"
        time.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["importing", "preloading"])
def test_ctrl_c_in_the_first_seconds_is_one_line(tmp_path, moment):
    """While the harness imports its libraries (numpy loaded, the rest still coming) or the
    forkserver preloads them (3 s in): one line from the harness, none from the forkserver
    or its children, and the process ends killed by SIGINT (status 130 in a shell), as
    Python ends an interrupted program."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "persistbench", "run", "--models", "logreg", "--no-calibrate",
         "--output", str(tmp_path / "r.json")], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if moment == "importing":
        _wait_until_loaded(proc.pid, "_multiarray_umath")
    else:
        time.sleep(3.0)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
