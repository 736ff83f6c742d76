"""Formats of one's own, registered through PERSISTBENCH_FORMATS in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persistbench.sources.formats import FORMATS, register

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "persistbench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_an_unimportable_module_is_a_one_line_error():
    done = _cli("list", env=_env(PERSISTBENCH_FORMATS="no_such_package.formats"))
    assert done.returncode == 2
    err = done.stderr.strip()
    assert "\n" not in err and "PERSISTBENCH_FORMATS" in err and "no_such_package" in err


def test_a_registered_format_is_listed():
    done = _cli("list", env=_env(PERSISTBENCH_FORMATS="tests.planted_format"))
    assert done.returncode == 0, done.stderr
    assert "planted" in done.stdout


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="pickle-p5"):
        register(FORMATS["pickle-p5"])


@pytest.mark.slow
def test_cells_and_fresh_servers_load_with_the_registered_format(tmp_path):
    """The cell's children and the freshly started servers know the format too."""
    output = tmp_path / "run.json"
    done = _cli("run", "--models", "logreg", "--formats", "planted", "--repeat", "2",
                "--starts", "1", "--no-calibrate", "--only", "--output", str(output),
                env=_env(PERSISTBENCH_FORMATS="tests.planted_format",
                         PERSISTBENCH_PLANTED_SLOWDOWN="1.5"))
    assert done.returncode == 0, done.stderr
    (cell,) = json.loads(output.read_text())["cells"]
    assert cell["format"] == "planted" and cell["status"] == "ok", cell.get("reason")
    assert cell["roundtrip_equal"] is True
    assert cell["load_s"]["n"] == 2 and cell["start_load_s"]["n"] == 1
