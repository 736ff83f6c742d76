"""The metadata sidecar: a real save, a real check, planted mismatches."""

from __future__ import annotations

import json
from importlib.metadata import version

import numpy as np
import pytest

from persistbench.commands import main as cli
from persistbench.commands import sidecar as metadata
from persistbench.sources.models import UsageError


@pytest.fixture
def data(tmp_path):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, n_features=6, random_state=3)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    noisy = np.random.default_rng(0).permutation(y)  # labels unrelated to X: a far lower score
    np.save(tmp_path / "y_noise.npy", noisy)
    return X, y


@pytest.fixture
def saved(tmp_path, data):
    from sklearn.linear_model import LogisticRegression

    X, y = data
    est = LogisticRegression().fit(X, y)
    path = tmp_path / "model.pkl"
    sidecar = metadata.save(est, path, "pickle-p5", X_train=X, y_train=y, cv_folds=3,
                            script=__file__)
    return est, path, sidecar


def test_sidecar_records_what_the_guide_asks_for(saved, data):
    est, path, sidecar = saved
    X, y = data
    on_disk = json.loads(metadata.sidecar_path(path).read_text())
    assert on_disk == json.loads(json.dumps(sidecar))
    assert metadata.sidecar_path(path).name == "model.pkl.meta.json"
    assert on_disk["model"]["sha256"] == metadata.file_sha256(path)
    assert on_disk["model"]["pickle_protocol"] == 5
    assert on_disk["training_data"]["X"]["shape"] == [200, 6]
    assert on_disk["training_data"]["X"]["sha256"] == metadata.array_fingerprint(X)["sha256"]
    assert on_disk["source"]["path"].endswith("test_metadata.py")
    assert on_disk["versions"]["scikit-learn"] == version("scikit-learn")
    assert set(on_disk["versions"]) == {"python", "scikit-learn", "numpy", "scipy"}
    assert on_disk["score"]["training"] == pytest.approx(est.score(X, y))
    assert len(on_disk["score"]["cv"]["scores"]) == 3


def test_fingerprint_sees_values_dtype_and_shape():
    a = np.arange(6.0)
    assert metadata.array_fingerprint(a) == metadata.array_fingerprint(a.copy())
    assert metadata.array_fingerprint(a) != metadata.array_fingerprint(a.astype(np.float32))
    assert metadata.array_fingerprint(a) != metadata.array_fingerprint(a.reshape(2, 3))
    with pytest.raises(UsageError, match="Python objects"):
        metadata.array_fingerprint(np.array([{}, []], dtype=object))


def test_serializer_versions_follow_the_format():
    from persistbench.sources.formats import FORMATS

    assert metadata.serializer_distributions(FORMATS["joblib-lz4"]) == ["joblib", "lz4"]
    assert metadata.serializer_distributions(FORMATS["onnx"]) == ["skl2onnx", "onnxruntime",
                                                                  "onnx"]
    assert metadata.serializer_distributions(FORMATS["pickle"]) == []


def test_check_passes_in_the_same_environment(saved, tmp_path, capsys):
    _, path, _ = saved
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "differs" not in out
    assert f"ok       scikit-learn: saved {version('scikit-learn')}" in out


def test_check_fails_on_a_planted_scikit_learn_mismatch(saved, capsys):
    _, path, _ = saved
    side = metadata.sidecar_path(path)
    planted = json.loads(side.read_text())
    planted["versions"]["scikit-learn"] = "0.24.2"
    planted["versions"]["numpy"] = "1.19.5"
    side.write_text(json.dumps(planted))
    assert cli.main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH scikit-learn: saved 0.24.2, now {version('scikit-learn')}" in out
    assert f"differs  numpy: saved 1.19.5, now {version('numpy')}" in out  # printed, not fatal


def test_other_mismatches_are_printed_but_do_not_fail(saved, capsys):
    _, path, _ = saved
    side = metadata.sidecar_path(path)
    planted = json.loads(side.read_text())
    planted["versions"]["scipy"] = "1.0.0"
    planted["platform"]["machine"] = "riscv64"
    side.write_text(json.dumps(planted))
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "differs  scipy: saved 1.0.0" in out and "differs  platform machine" in out


def test_check_notices_a_changed_model_file(saved, capsys):
    _, path, _ = saved
    path.write_bytes(path.read_bytes() + b"\0")
    assert cli.main(["check", str(path)]) == 1
    assert "MISMATCH model file sha256" in capsys.readouterr().out


@pytest.mark.slow
def test_rescoring_in_a_child(saved, tmp_path, capsys):
    _, path, _ = saved
    assert cli.main(["check", str(path), "--data", str(tmp_path / "X.npy"),
                     str(tmp_path / "y.npy")]) == 0
    assert "ok       score on the training data" in capsys.readouterr().out
    assert cli.main(["check", str(path), "--data", str(tmp_path / "X.npy"),
                     str(tmp_path / "y_noise.npy")]) == 1
    assert "MISMATCH score on the given data vs cross-validation" in capsys.readouterr().out


def test_save_command_for_a_zoo_model(tmp_path, capsys):
    out = tmp_path / "m.skops"
    assert cli.main(["save", "logreg@small", "--format", "skops", "--out", str(out),
                     "--cv-score", "0.9"]) == 0
    sidecar = json.loads(metadata.sidecar_path(out).read_text())
    assert sidecar["model"]["format"] == "skops"
    assert sidecar["versions"]["skops"] == version("skops")
    assert "logreg@small, seed 0" in sidecar["training_data"]["reference"]
    assert sidecar["source"]["path"].endswith("harness/sources/models.py")
    assert sidecar["score"]["cv"]["mean"] == 0.9


@pytest.mark.parametrize("argv, message", [
    (["save", "nope@small", "--format", "pickle", "--out", "m.pkl"], "unknown model"),
    (["save", "logreg@huge", "--format", "pickle", "--out", "m.pkl"], "unknown size"),
    (["save", "logreg", "--format", "pickle", "--out", "m.pkl", "--cv", "3",
      "--train-data", "X.npy"], "--cv needs"),
    (["save", "logreg", "--format", "pickle", "--out", "m.pkl", "--train-data", "X.csv"],
     "expected a .npy file"),
    (["check", "missing.pkl"], "no such model file"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, data, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_check_without_sidecar_says_where_to_look(tmp_path, capsys):
    model = tmp_path / "m.pkl"
    model.write_bytes(b"not read")
    assert cli.main(["check", str(model)]) == 2
    assert "--sidecar" in capsys.readouterr().err
