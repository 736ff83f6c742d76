"""Both audit stages forked from a preloaded process (`schedule/forked.py`): the same
verdicts as fresh interpreters, confined the same way, and nothing the parent had open is
reachable from the child."""

from __future__ import annotations

import pickle

import pytest
from sklearn.linear_model import LogisticRegression

from persistbench.audit import audit
from persistbench.commands.main import main
from persistbench.experiments import security
from persistbench.schedule.capped import audit_capped
from persistbench.schedule.detonate import add_load_stage
from persistbench.schedule.forked import can_fork, preload


@pytest.fixture(scope="module", autouse=True)
def _preloaded():
    preload()
    if not can_fork():
        pytest.skip("this test process has threads: stages are not forked from it")


def test_a_benign_model_is_clean_in_forked_stages(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1])))
    report = audit_capped(path, fork=True)
    assert report.exit_status == 0 and report.format == "pickle"
    stage = add_load_stage(report, fork=True)
    assert stage.confined and stage.confined["landlock_abi"] >= 1
    assert stage.ending == "finished" and not stage.attempts and not stage.written
    assert {o["outcome"] for o in stage.outcomes} == {"loaded"}
    assert report.exit_status == 0


def test_a_payload_is_stopped_in_a_forked_load(tmp_path):
    bad, canary = tmp_path / "bad.pkl", tmp_path / "canary"
    bad.write_bytes(security.malicious_pickles(canary)["reduce-os-system"])
    report = audit(bad)
    report.findings = []  # as if the static walk had been fooled
    stage = add_load_stage(report, fork=True)
    assert stage.ending == "killed-at-system-call"
    assert any(a["what"] == "os.system" for a in stage.attempts)
    assert not canary.exists() and report.exit_status == 1


def test_descriptors_open_in_the_parent_are_closed_in_the_child(tmp_path):
    """A shipped function writes to every descriptor it can: the parent's open file (which
    Landlock would not cover) must not be one of them."""
    import cloudpickle

    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    source = "def spray():\n    import os\n    for fd in range(3, 1024):\n        try:\n" \
             "            os.write(fd, b'\\nx')\n        except OSError:\n            pass\n"
    namespace: dict = {}
    exec(compile(source, "spray", "exec"), namespace)  # a function cloudpickle ships by value

    class Spray:
        def __reduce__(self):
            return (namespace["spray"], ())

    bad = tmp_path / "spray.pkl"
    bad.write_bytes(cloudpickle.dumps(Spray()))
    with open(victim, "a"):  # open in this process while the child is forked
        report = audit(bad)
        stage = add_load_stage(report, fork=True)
    assert victim.read_text() == "intact"
    # it ran: what it wrote on the one descriptor it still had, the event pipe, shows
    assert any(a["what"] == "garbled event line" for a in stage.attempts), stage.to_json()
    assert report.exit_status == 1


def test_the_command_audits_several_files_with_one_start(tmp_path, capsys):
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1])))
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(security.malicious_pickles(tmp_path / "canary")["reduce-os-system"])
    assert main(["audit", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.count("verdict:") == 2
    assert not (tmp_path / "canary").exists()


def test_joblibs_unpickler_reads_byte_arrays_in_place_to_the_same_result(tmp_path,
                                                                         monkeypatch):
    """The load stage's in-place fill gives what `buf[:] = file.read(n)` gives, a short
    file included."""
    import numpy as np

    from persistbench.schedule.loadchild import _read_in_place

    data = pickle.dumps({"x": np.arange(50_000.0), "b": bytearray(b"abc" * 1000)}, protocol=5)
    whole, short = tmp_path / "whole.pkl", tmp_path / "short.pkl"
    whole.write_bytes(data)
    short.write_bytes(data[: len(data) // 2])

    def outcome(path):
        try:
            with open(path, "rb") as fh:
                obj = pickle._Unpickler(fh).load()
            return ("loaded", obj["x"].sum(), bytes(obj["b"]))
        except Exception as exc:
            return ("error", type(exc).__name__)

    monkeypatch.setattr(pickle._Unframer, "readinto", pickle._Unframer.readinto)
    before = [outcome(whole), outcome(short)]
    _read_in_place()
    assert [outcome(whole), outcome(short)] == before
    assert before[0][0] == "loaded" and before[1][0] == "error"
