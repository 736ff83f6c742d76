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
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
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


def test_run_with_a_user_model_writes_results(tmp_path):
    out = tmp_path / "r.json"
    proc = persistbench("run", "--model", "known_models:raises", "--formats", "pickle,skops",
                        "--repeat", "1", "--no-calibrate", "--output", str(out),
                        cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from harness.results import read

    cells = read(out)["cells"]
    assert {c["format"] for c in cells} == {"pickle", "skops"}
    assert all(c["model"] == "known_models:raises" and c["size"] == "custom" for c in cells)
