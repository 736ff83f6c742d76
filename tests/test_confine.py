"""Confinement of untrusted loads, and the audit's load stage that relies on it.

Every test that runs a payload runs it in a confined child process and then checks, from
outside, that it took no effect: canaries absent, victim files intact.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from benchmarks.audit_corpus.payloads import PAYLOADS
from persistbench.audit import audit
from persistbench.commands.main import main
from persistbench.experiments import security
from persistbench.schedule import confine as confine_module
from persistbench.schedule.detonate import add_load_stage, findings, run_load_stage

pytestmark = pytest.mark.skipif(confine_module.unavailable() is not None,
                                reason=f"{confine_module.unavailable()}")

PROBE = """
import os, sys
from persistbench.schedule.confine import Limits, confine
scratch, outside, what = sys.argv[1:4]
confine(Limits(writable=(scratch,), memory_bytes=1 << 30, cpu_s=2))
if what == "scratch":
    open(os.path.join(scratch, "ok"), "w").write("ok")
elif what == "outside":
    try:
        open(outside, "w").write("changed")
    except PermissionError:
        sys.exit(13)
elif what == "victim":
    try:
        os.remove(outside)
    except PermissionError:
        sys.exit(13)
elif what == "system":
    os.system("touch " + outside)
elif what == "socket":
    import socket
    socket.create_connection(("127.0.0.1", 9))
elif what == "kill-parent":
    try:
        os.kill(os.getppid(), 0)
    except PermissionError:
        sys.exit(13)
elif what == "memory":
    try:
        b = bytearray(2 << 30)
    except MemoryError:
        sys.exit(12)
elif what == "cpu":
    while True:
        pass
"""


def probe(tmp_path: Path, what: str) -> tuple[int, Path]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    outside = tmp_path / "victim.txt"
    outside.write_text("intact")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(scratch), str(outside), what],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, outside


@pytest.mark.parametrize("what, returncode", [
    ("scratch", 0), ("outside", 13), ("victim", 13), ("kill-parent", 13), ("memory", 12),
    ("system", -signal.SIGSYS), ("socket", -signal.SIGSYS), ("cpu", -signal.SIGXCPU)])
def test_the_kernel_enforces_each_limit(tmp_path, what, returncode):
    code, victim = probe(tmp_path, what)
    assert code == returncode
    assert victim.read_text() == "intact"
    assert (tmp_path / "scratch" / "ok").exists() == (what == "scratch")


def test_unavailable_says_why_in_one_line(monkeypatch):
    monkeypatch.setattr(confine_module, "landlock_abi", lambda: 0)
    reason = confine_module.unavailable()
    assert "Landlock" in reason and "\n" not in reason


@pytest.fixture(scope="module")
def benign(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("benign")
    X = np.random.default_rng(0).normal(size=(50, 3))
    est = LogisticRegression().fit(X, X[:, 0] > 0)
    joblib.dump(est, folder / "model.joblib")
    (folder / "model.pkl").write_bytes(pickle.dumps(est))
    return folder


@pytest.mark.parametrize("name", ["model.joblib", "model.pkl"])
def test_a_benign_model_loads_clean_and_confined(benign, name):
    report = audit(benign / name)
    stage = add_load_stage(report)
    assert stage.confined and stage.confined["landlock_abi"] >= 1
    assert stage.ending == "finished" and not stage.attempts and not stage.written
    assert "sklearn.linear_model._logistic.LogisticRegression" in stage.resolved
    outcomes = {o["loader"]: o["outcome"] for o in stage.outcomes}
    assert outcomes["joblib.load"] == "loaded"
    # pickle.load reads a joblib file up to its first array's bytes, and stops there
    assert outcomes["pickle.load"] == ("loaded" if name == "model.pkl" else "error")
    assert report.exit_status == 0


@pytest.mark.slow
def test_a_benign_onnx_model_leaves_nothing_behind(benign, tmp_path):
    """onnxruntime writes a cache under $HOME at every session: the runtime's doing, not the
    file's, so the load stage gives it a home where nothing can be created."""
    pytest.importorskip("skl2onnx", reason="the onnx extra")
    from persistbench.sources.formats import FORMATS

    est = joblib.load(benign / "model.joblib")
    path = tmp_path / "model.onnx"
    FORMATS["onnx"].dump(est, path, np.zeros((2, 3)))
    report = audit(path)
    stage = add_load_stage(report)
    assert stage.outcomes[0]["outcome"] == "loaded" and not stage.written
    assert report.exit_status == 0


def _payload(name: str):
    return next(p for p in PAYLOADS if p.name == name)


LOADER_FORMATS = {"pickle": "pickle", "joblib": "joblib", "skops": "skops"}
FAST = ["reduce-os-system", "numpy-save", "joblib-after-array", "cloudpickle-call-on-load"]
LOADED = [p.name for p in PAYLOADS if p.loader in LOADER_FORMATS]


def _detonate_alone(tmp_path: Path, name: str):
    """The load stage alone, as if the static walk had been fooled: it must flag by itself."""
    payload = _payload(name)
    path, canary = tmp_path / f"{name}.bin", tmp_path / "canaries" / f"{name}.npy"
    canary.parent.mkdir()
    payload.write(path, canary)
    stage = run_load_stage(path, LOADER_FORMATS[payload.loader])
    report = audit(path)
    report.findings = []
    return stage, findings(stage, report, ()), canary


def _check_detonation(tmp_path: Path, name: str) -> None:
    stage, found, canary = _detonate_alone(tmp_path, name)
    assert not canary.exists(), f"{name}: the payload took effect"
    assert list(canary.parent.iterdir()) == []
    assert stage.confined
    if name == "after-stop":
        return  # a second pickle after STOP: only a reader of pickle streams runs it
    assert found, f"{name}: the load stage saw nothing ({stage.to_json()})"


@pytest.mark.parametrize("name", FAST)
def test_the_load_stage_flags_a_payload_by_itself(tmp_path, name):
    _check_detonation(tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LOADED if n not in FAST])
def test_the_load_stage_on_every_corpus_payload(tmp_path, name):
    _check_detonation(tmp_path, name)


def test_audit_cli_refuses_without_confinement_unless_static_only(tmp_path, monkeypatch,
                                                                  capsys, benign):
    monkeypatch.setattr(confine_module, "unavailable", lambda: "confinement needs Linux")
    assert main(["audit", str(benign / "model.pkl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--static-only" in err and "\n" not in err
    assert main(["audit", str(benign / "model.pkl"), "--static-only"]) == 0


def test_audit_cli_reports_the_load_stage(tmp_path, capsys):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(security.malicious_pickles(tmp_path / "canary")["reduce-os-system"])
    assert main(["audit", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "load-attempt: os.system" in out and "killed-at-system-call" in out
    assert not (tmp_path / "canary").exists()


def test_advise_refuses_a_file_whose_confined_load_attempts_something(tmp_path):
    """Trusting the flagged module gets past the static walk; the load stage still refuses."""
    bad = tmp_path / "bad.pkl"
    canary = tmp_path / "canary"
    bad.write_bytes(security.malicious_pickles(canary)["reduce-os-system"])
    env = {**os.environ, "PERSISTBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "persistbench", "advise", str(bad),
                           "--trust", "posix"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "its confined load attempted" in proc.stderr + proc.stdout
    assert not canary.exists()


def test_the_training_child_of_a_model_file_is_confined(tmp_path, monkeypatch):
    """A registered file that slipped past both stages still cannot act when the runner
    loads it: its `os.system` fails (quietly, since libraries may try a program on their
    own), and the load ends with no estimator."""
    from persistbench.schedule.runner import train_model
    from persistbench.sources.model_file import register

    monkeypatch.setenv("PERSISTBENCH_CACHE", str(tmp_path / "cache"))
    canary = tmp_path / "canary"
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(security.malicious_pickles(canary)["reduce-os-system"])
    report = audit(bad)
    report.format, report.findings = "pickle", []  # as if both stages had been fooled
    entry = register(bad, None, report)
    outcome = train_model(entry.name, "custom", 0, tmp_path)
    assert outcome["status"] == "error" and "not an estimator" in outcome["reason"], outcome
    assert not canary.exists()


def test_advise_refuses_without_confinement_unless_unconfined(benign, tmp_path, monkeypatch):
    from persistbench.commands.advise import model_source
    from persistbench.sources.models import UsageError

    monkeypatch.setenv("PERSISTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(confine_module, "unavailable", lambda: "confinement needs Linux")
    with pytest.raises(UsageError, match="pass --unconfined"):
        model_source(benign / "model.pkl", None, ())
    entry = model_source(benign / "model.pkl", None, (), unconfined=True)
    assert entry.unconfined
    from persistbench.schedule.worker import _confined_spec

    assert _confined_spec(entry.name) is None  # the runner will load it unconfined, as asked
