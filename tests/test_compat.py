"""The cross-version matrix: real environments, real files, real interpreters.

The matrix test is the CI variant: two scikit-learn versions (the installed one and the latest
release of the previous minor, built once into the venv cache) and one model.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from persistbench.commands import main as cli
from persistbench.envs import builder as compat
from persistbench.envs import server as env_server
from persistbench.experiments import Cell, StepContext
from persistbench.experiments import compat as experiment
from persistbench.results.schema import read
from persistbench.results.vocabulary import COMPAT_OUTCOMES, outcome_matrix
from persistbench.sources.models import UsageError

FORMATS = ("pickle", "skops")


# ------------------------------------------------------------------------ pure pieces

def test_exact_versions_are_taken_as_given_and_bad_ones_refused():
    assert compat.resolve_versions(["1.8.0", "1.9.1", "1.8.0"]) == ["1.8.0", "1.9.1"]
    with pytest.raises(UsageError, match="expected versions like"):
        compat.resolve_versions(["latest"])


def test_old_scikit_learn_gets_numpy_1():
    assert "numpy<2" in compat.requirements("1.3.2")
    assert "numpy<2" not in compat.requirements("1.7.2")
    assert "scikit-learn==1.7.2" in compat.requirements("1.7.2")


def test_pip_reason_keeps_its_error_lines():
    stderr = ("Looking in indexes: x\nERROR: Could not find a version that satisfies the "
              "requirement scikit-learn==9.9\nERROR: No matching distribution found\n")
    assert compat.build_reason(stderr).startswith("ERROR: Could not find a version")
    assert "No matching distribution" in compat.build_reason(stderr)
    assert compat.build_reason("just one line\n") == "just one line"


def test_outcome_ranks_error_then_differs_then_warning():
    warned = {"warnings": [{"class": "UserWarning", "text": "u"},
                           {"class": "InconsistentVersionWarning", "text": "from 1.8.0"}]}
    same = {"predictions_equal": True}
    assert experiment.classify({}, same)["outcome"] == "ok"
    got = experiment.classify(warned, same)
    assert (got["outcome"], got["warning_class"]) == ("warning", "InconsistentVersionWarning")
    assert experiment.classify(warned, {"predictions_equal": False})["outcome"] == "differs"
    assert experiment.classify({**warned, "message": "E: x"}, None)["outcome"] == "error"


def test_compare_checks_labels_and_probabilities_exactly():
    want = {"labels": np.array([0, 1, 1]), "proba": np.array([[0.9, 0.1], [0.2, 0.8],
                                                             [0.4, 0.6]])}
    assert experiment.compare(want, dict(want))["predictions_equal"] is True
    shifted = {"labels": want["labels"], "proba": want["proba"] + 1e-9}
    out = experiment.compare(want, shifted)
    assert out["predictions_equal"] is False and out["label_agreement"] == 1.0
    assert out["proba_max_abs_diff"] == pytest.approx(1e-9)
    flipped = experiment.compare(want, {**want, "labels": np.array([0, 0, 1])})
    assert flipped["label_agreement"] == pytest.approx(2 / 3)


# ------------------------------------------- the load step on planted files, real processes

class Bomb:
    """Unpickling this kills the loading interpreter, as a native crash would."""

    def __reduce__(self):
        return (os.abort, ())


@pytest.fixture(scope="module")
def installed():
    """The installed version's environment, with its loading server running."""
    env = compat.environment(compat.harness_sklearn()).as_dict()
    with env_server.running([env]) as served:
        yield served[0]


def _planted(tmp_path, installed: dict, payload: bytes, expected_labels) -> StepContext:
    """A file 'saved with' the installed version, loaded by the installed version."""
    from sklearn.linear_model import LogisticRegression

    version = installed["sklearn"]
    cell = Cell("compat", "logreg", "small", "pickle", variant=f"{version}->{version}",
                options={"environments": [installed], "artefacts_dir": str(tmp_path / "a"),
                         "formats": ["pickle"], "seed": 0}, needs_model=False)
    directory = experiment.saved_dir(cell, version)
    directory.mkdir(parents=True)
    X = np.arange(20, dtype=float).reshape(10, 2)
    (directory / "model.pkl").write_bytes(payload)
    np.save(directory / "X.npy", X)
    np.savez(directory / "expected-pickle.npz", labels=expected_labels)
    (directory / experiment.MANIFEST).write_text(json.dumps({"pickle": {
        "status": "ok", "file": "model.pkl", "info": {}, "file_bytes": len(payload),
        "versions": {}, "modules": [LogisticRegression.__module__]}}))
    work = tmp_path / "cell"
    work.mkdir()
    return StepContext(cell=cell, workdir=work, previous={}, cell_started=0.0)


def _fitted_logreg():
    from sklearn.linear_model import LogisticRegression

    X = np.arange(20, dtype=float).reshape(10, 2)
    y = (X[:, 0] > 9).astype(int)
    return LogisticRegression().fit(X, y), X


def test_a_process_that_dies_while_loading_is_a_crash(tmp_path, installed):
    ctx = _planted(tmp_path, installed, pickle.dumps(Bomb()), np.zeros(10, dtype=int))
    out = experiment.load_step(ctx)
    assert out["outcome"] == "crash"
    assert out["message"] == "process died of SIGABRT"


@pytest.mark.slow
def test_a_truncated_file_is_an_error_with_the_message(tmp_path, installed):
    est, _ = _fitted_logreg()
    ctx = _planted(tmp_path, installed, pickle.dumps(est)[:200], np.zeros(10, dtype=int))
    out = experiment.load_step(ctx)
    assert (out["outcome"], out["failed_phase"]) == ("error", "load")
    assert "pickle data was truncated" in out["message"]


@pytest.mark.slow
def test_other_predictions_than_the_saving_side_are_differs(tmp_path, installed):
    est, X = _fitted_logreg()
    wrong = 1 - est.predict(X)
    out = experiment.load_step(_planted(tmp_path, installed, pickle.dumps(est), wrong))
    assert out["outcome"] == "differs"
    assert out["label_agreement"] == 0.0 and out["predictions_equal"] is False
    right = experiment.load_step(_planted(tmp_path / "2", installed, pickle.dumps(est),
                                          est.predict(X)))
    assert right["outcome"] == "ok"


# ------------------------------------------------- the loading server: one child per request

def test_each_request_runs_in_its_own_child(tmp_path, installed):
    """Exit codes and signals come back as a fresh interpreter's would; what one child does
    to its state (a warnings filter turned into errors) never reaches the next one."""
    server = installed["server"]
    assert env_server.request(server, "os:_exit", 3, tmp_path).returncode == 3
    assert env_server.request(server, "signal:raise_signal", 9, tmp_path).returncode == -9
    assert env_server.request(server, "warnings:simplefilter", "error", tmp_path).returncode == 0
    warned = env_server.request(server, "warnings:warn", "still a warning", tmp_path)
    assert warned.returncode == 0 and "UserWarning: still a warning" in warned.stderr
    failed = env_server.request(server, "json:loads", "{", tmp_path)
    assert failed.returncode == 1 and "JSONDecodeError" in failed.stderr


def test_a_caller_that_goes_away_takes_its_child_along(tmp_path, installed):
    """A cell killed for its timeout closes the connection: the server kills the hung child
    and answers the next request at once."""
    import json as json_
    import socket
    import time

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(installed["server"])
        conn.sendall(json_.dumps({"function": "time:sleep", "args": 600,
                                  "log": str(tmp_path / "sleep.log")}).encode() + b"\n")
        time.sleep(0.5)
    started = time.monotonic()
    assert env_server.request(installed["server"], "os:_exit", 0, tmp_path).returncode == 0
    assert time.monotonic() - started < 60


def test_environments_without_a_server_say_why(tmp_path):
    missing = {"sklearn": "0.0.1", "python": None, "reason": "no such release"}
    broken = {"sklearn": "0.0.2", "python": "/bin/false", "reason": None}
    with env_server.running([missing, broken]) as served:
        assert "server" not in served[0]
        assert "exited with status 1" in served[1]["server_error"]
    for env in served:
        with pytest.raises(experiment.EnvironmentUnavailable, match=env["sklearn"]):
            experiment._server(env)


# ---------------------------------------------------------------- the matrix, end to end

@pytest.fixture(scope="module")
def two_versions() -> list[str]:
    """The installed version and the latest release of the previous minor pip offers."""
    return compat.resolve_versions(None)[-2:]


@pytest.mark.slow
def test_matrix_of_two_versions(tmp_path, monkeypatch, two_versions):
    monkeypatch.chdir(tmp_path)  # the run writes its report under ./reports
    older, installed = two_versions
    out = tmp_path / "compat.json"
    code = cli.main(["compat", "--sklearn", ",".join(two_versions), "--models", "logreg",
                     "--formats", ",".join(FORMATS), "--output", str(out), "--no-calibrate"])
    assert code == 0
    data = read(out)  # validates against the results schema
    cells = {c["cell_id"]: c for c in data["cells"]}
    assert len(cells) == len(FORMATS) * 4
    for cell in cells.values():
        saved, loaded = cell["variant"].split("->")
        assert cell["status"] == "ok", cell.get("reason")
        assert (cell["saved_with"], cell["loaded_with"]) == (saved, loaded)
        # The other interpreter really ran: each side reports its own scikit-learn.
        assert cell["saved_versions"]["scikit-learn"] == saved
        assert cell["loaded_versions"]["scikit-learn"] == loaded
        assert cell["outcome"] in COMPAT_OUTCOMES
        if saved == loaded:
            assert cell["outcome"] == "ok", cell
            assert cell["label_agreement"] == 1.0
    for a, b in ((older, installed), (installed, older)):
        warned = cells[f"compat/logreg/small/pickle/{a}->{b}"]
        assert warned["outcome"] == "warning"
        assert warned["warning_class"] == "InconsistentVersionWarning"
        assert a in warned["warning_text"] and b in warned["warning_text"]
    sources = {e["sklearn"]: e["source"] for e in data["run"]["compat_environments"]}
    assert sources[installed] == "harness" and sources[older] in ("built", "cached")
    matrix = outcome_matrix(data["cells"])
    assert set(matrix) == set(FORMATS)
    assert sum(sum(c.values()) for c in matrix["pickle"].values()) == 4
    assert list((tmp_path / "reports").glob("*/index.html"))


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["uv", "pip"])
def test_an_environment_that_cannot_be_built_gives_error_cells(tmp_path, monkeypatch, builder):
    """Whichever builder ran, its own words say why, and the run goes on."""
    monkeypatch.chdir(tmp_path)
    if builder == "pip":
        monkeypatch.setattr(compat, "_uv", lambda: None)
    installed = compat.harness_sklearn()
    out = tmp_path / "compat.json"
    code = cli.main(["compat", "--sklearn", f"0.0.1,{installed}", "--models", "logreg",
                     "--formats", "pickle", "--output", str(out), "--no-calibrate"])
    assert code == 0
    cells = {c["variant"]: c for c in read(out)["cells"]}
    assert cells[f"{installed}->{installed}"]["status"] == "ok"
    for variant in ("0.0.1->0.0.1", f"0.0.1->{installed}", f"{installed}->0.0.1"):
        assert cells[variant]["status"] == "error"
        assert "scikit-learn==0.0.1" in cells[variant]["reason"]
        assert f"{builder} " in cells[variant]["reason"]
        # the builder's own words
        assert ("ERROR:" if builder == "pip" else "No solution found") in cells[variant]["reason"]


def test_compat_cells_need_the_compat_command():
    with pytest.raises(UsageError, match="persistbench compat"):
        experiment.plan(["logreg"], ["small"], ["pickle"], {"seed": 0})
