"""The load stage's child started ahead of the static walk (`detonate.start_ahead`): it
loads confined as any load child does once told to, and a cancelled one never loads."""

from __future__ import annotations

import pickle

import pytest
from sklearn.linear_model import LogisticRegression

from persistbench.audit import Finding, audit
from persistbench.commands.main import main
from persistbench.experiments import security
from persistbench.schedule import confine as confine_module
from persistbench.schedule.detonate import add_load_stage
from persistbench.schedule.launch import start_ahead

pytestmark = pytest.mark.skipif(confine_module.unavailable() is not None,
                                reason=f"{confine_module.unavailable()}")


def test_a_benign_model_loads_clean_in_a_child_started_ahead(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1])))
    early = start_ahead(path)
    report = audit(path)
    stage = add_load_stage(report, ahead=early)
    assert stage.confined and stage.confined["landlock_abi"] >= 1
    assert stage.ending == "finished" and not stage.attempts and not stage.written
    assert {o["outcome"] for o in stage.outcomes} == {"loaded"}
    assert "sklearn.linear_model._logistic.LogisticRegression" in stage.resolved
    assert report.exit_status == 0 and not early.scratch.exists()


def test_a_payload_is_stopped_in_a_child_started_ahead(tmp_path):
    bad, canary = tmp_path / "bad.pkl", tmp_path / "canary"
    bad.write_bytes(security.malicious_pickles(canary)["reduce-os-system"])
    early = start_ahead(bad)
    report = audit(bad)
    report.findings = []  # as if the static walk had been fooled
    stage = add_load_stage(report, ahead=early)
    assert stage.ending == "killed-at-system-call"
    assert any(a["what"] == "os.system" for a in stage.attempts)
    assert not canary.exists() and report.exit_status == 1


def test_a_child_started_ahead_is_cancelled_unloaded_when_the_walk_stops(tmp_path):
    bad, canary = tmp_path / "bad.pkl", tmp_path / "canary"
    bad.write_bytes(security.malicious_pickles(canary)["reduce-os-system"])
    early = start_ahead(bad)
    report = audit(bad)
    report.findings = [Finding("budget", "walk", "stopped at a budget")]
    assert add_load_stage(report, ahead=early) is None
    assert early.proc.returncode is not None and not early.scratch.exists()
    assert "load_stage" not in report.details and not canary.exists()
    assert any("skipped" in note for note in report.notes)


def test_one_file_audits_through_the_command_with_its_load_started_ahead(tmp_path, capsys):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1])))
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "load stage (confined" in out and "verdict: clean" in out
    (tmp_path / "not-a-model.pkl").write_bytes(b"garbage")
    assert main(["audit", str(tmp_path / "not-a-model.pkl")]) == 2


def test_the_command_starts_its_child_before_importing_numpy():
    """What the audit's process imports before `start_ahead` delays the child's start."""
    import subprocess
    import sys

    code = ("import sys\nfrom persistbench.commands.main import build_parser\n"
            "build_parser('audit').parse_args(['audit', 'x.pkl'])\n"
            "import persistbench.schedule.launch\n"
            "print(sorted(m for m in ('numpy', 'persistbench.audit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
