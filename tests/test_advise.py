"""A user's own model file: the audit gate, evaluation rows, and `persistbench advise`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="the data extra (pandas, pyarrow) is not installed")
pytest.importorskip("pyarrow", reason="the data extra (pandas, pyarrow) is not installed")

from persistbench.commands.options import trusted as _trusted  # noqa: E402
from persistbench.sources.eval_rows import (  # noqa: E402
    RowsNeeded,
    check_readable,
    evaluation_rows,
    rows_from_table,
    synthesize,
)
from persistbench.sources.model_file import Refused, admit, register, spec_for  # noqa: E402
from persistbench.sources.models import UsageError  # noqa: E402
from persistbench.sources.resolve import resolve_spec  # noqa: E402

TRAIN_SCRIPT = textwrap.dedent("""
    # A user's training script: a mixed DataFrame, a ColumnTransformer and gradient boosting.
    import sys
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"city": rng.choice(["paris", "lyon", "lille"], n),
                       "plan": rng.choice(["free", "pro"], n),
                       "age": rng.integers(18, 80, n), "income": rng.normal(4e4, 1e4, n)})
    y = ((df["plan"] == "pro") | (df["income"] > 45e3)).astype(int)
    numeric = FunctionTransformer(np.log1p) if sys.argv[1] == "opaque" else StandardScaler()
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                             ("num", numeric, ["age", "income"])], sparse_threshold=0)
    model = Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=10))])
    model.fit(df, y)
    joblib.dump(model, "model.joblib")
    df.assign(target=y).to_parquet("train.parquet")
    df.assign(target=y).to_csv("train.csv", index=False)
""")


def train_in_script(folder: Path, kind: str = "scaled") -> Path:
    """Fit and save the model in a separate interpreter, as a user's own script would."""
    (folder / "train.py").write_text(TRAIN_SCRIPT)
    subprocess.run([sys.executable, "train.py", kind], cwd=folder, check=True, timeout=120)
    return folder / "model.joblib"


class Payload:
    """Writes the id of the process that unpickles it into a canary file."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"echo $PPID > {self.canary}",))


def payload_file(folder: Path) -> tuple[Path, Path]:
    canary = folder / "CANARY"
    path = folder / "evil.joblib"
    joblib.dump({"weights": np.arange(10.0), "payload": Payload(canary)}, path)
    return path, canary


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PERSISTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> Path:
    return train_in_script(tmp_path_factory.mktemp("user"))


# ------------------------------------------------------------------------------ the gate

def test_a_reduce_payload_is_refused_with_its_findings(tmp_path):
    path, canary = payload_file(tmp_path)
    with pytest.raises(Refused) as refused:
        admit(path)
    text = str(refused.value)
    assert "FLAGGED import: posix.system" in text or "FLAGGED import: os.system" in text
    assert "--trust" in text and "not loaded" in text
    assert not canary.exists()


def test_trust_must_name_exactly_what_is_flagged(tmp_path):
    path, canary = payload_file(tmp_path)
    with pytest.raises(UsageError, match="nothing the audit flagged is under it"):
        admit(path, ("numpy",))
    flagged = "posix" if os.name == "posix" else "nt"
    report = admit(path, (flagged,))  # explicitly trusted: admitted, still not loaded here
    assert report.findings == []
    assert not canary.exists()


def test_a_clean_file_is_admitted_and_needs_no_trust(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(50, 3))
    path = tmp_path / "clean.pkl"
    joblib.dump(LogisticRegression().fit(X, X[:, 0] > 0), path)
    assert admit(path).format == "joblib"
    with pytest.raises(UsageError, match="nothing is flagged"):
        admit(path, ("mypkg",))


@pytest.mark.slow
def test_an_onnx_file_is_not_a_python_estimator(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from persistbench.sources.formats import FORMATS

    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    path = tmp_path / "m.onnx"
    FORMATS["onnx"].dump(LogisticRegression().fit(X, X[:, 0] > 0), path, X)
    with pytest.raises(UsageError, match="a onnx file; advise measures Python estimators"):
        admit(path)


def test_trust_accepts_spaces_commas_and_repeats():
    assert _trusted(["a", "b,c", "a"]) == ("a", "b", "c")
    assert _trusted(None) == ()


# ------------------------------------------------------------------- evaluation rows

def _fitted(kind: str = "scaled"):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"colour": rng.choice(["red", "blue"], 200), "x": rng.normal(5, 2, 200)})
    numeric = FunctionTransformer(np.log1p) if kind == "opaque" else StandardScaler()
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["colour"]), ("num", numeric, ["x"])])
    est = Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=5))])
    return est.fit(df, df["x"] > 5), df


def test_synthesized_rows_follow_the_fitted_columns():
    est, _ = _fitted()
    rows = synthesize(est, n=100, seed=0)
    assert list(rows.X.columns) == ["colour", "x"]
    assert set(rows.X["colour"]) == {"red", "blue"}
    assert abs(rows.X["x"].mean() - 5) < 1.0  # centred where the fitted scaler saw the data
    assert len(est.predict(rows.X)) == 100
    assert "1 numeric" in rows.origin and "1 categorical" in rows.origin


def test_a_column_the_model_does_not_describe_asks_for_data():
    est, _ = _fitted("opaque")
    with pytest.raises(RowsNeeded, match=r"column 'x' goes to num \(FunctionTransformer\).*"
                                         r"pass --data"):
        evaluation_rows(est, None)


def test_an_array_model_gets_numeric_rows():
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 4))
    rows = synthesize(LogisticRegression().fit(X, X[:, 0] > 0), n=30)
    assert rows.X.shape == (30, 4)


def test_table_rows_keep_the_fitted_columns_and_drop_the_rest(tmp_path):
    est, df = _fitted()
    df.assign(target=1).to_parquet(tmp_path / "t.parquet")
    rows = rows_from_table(est, tmp_path / "t.parquet", n=50)
    assert list(rows.X.columns) == ["colour", "x"] and len(rows.X) == 50
    assert "50 of 200 rows" in rows.origin and "target" in rows.origin
    df[["x"]].to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(RowsNeeded, match=r"lacks column.*colour"):
        evaluation_rows(est, tmp_path / "t.csv")


def test_a_numpy_table_must_match_the_fitted_width(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 4))
    np.save(tmp_path / "X.npy", X[:, :3])
    with pytest.raises(RowsNeeded, match="3 columns; the model was fitted on 4"):
        rows_from_table(LogisticRegression().fit(X, X[:, 0] > 0), tmp_path / "X.npy")


def test_table_readers_are_checked_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"unknown kind '\.xlsx'"):
        check_readable(tmp_path / "t.xlsx")
    with pytest.raises(UsageError, match="no such file"):
        check_readable(tmp_path / "t.csv")
    (tmp_path / "t.parquet").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the extra were not installed
    with pytest.raises(UsageError, match=r"needs pyarrow.*persistbench\[data\]"):
        check_readable(tmp_path / "t.parquet")


# ------------------------------------------------------------------- registry and cache

def test_a_registered_file_resolves_to_a_spec_keyed_by_its_hash(tmp_path, cache):
    est, _ = _fitted()
    path = tmp_path / "m.joblib"
    joblib.dump(est, path)
    entry = register(path, None, admit(path))
    spec = resolve_spec(entry.name)
    assert spec.params["custom"]["file_sha256"] == entry.sha256
    assert spec.sizes() == ("custom",)
    _, X = spec.build("custom", 0)  # what the runner's child does
    assert list(X.columns) == ["colour", "x"]
    assert spec.info("custom", 0)["estimator"].startswith("Pipeline: ColumnTransformer")
    path.write_bytes(path.read_bytes() + b"\0")  # changed after the audit: never loaded
    with pytest.raises(RuntimeError, match="changed after it was audited"):
        spec_for(entry.name).build("custom", 0)


def test_an_unregistered_file_name_is_a_usage_error(cache):
    with pytest.raises(UsageError, match="not a model file registered"):
        resolve_spec("file:model.joblib@000000000000")


# ------------------------------------------------------------------------- the command

def persistbench(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERSISTBENCH_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "persistbench", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize("args, needle", [
    (["advise", "missing.joblib"], "missing.joblib: no such model file"),
    (["run", "--data", "t.csv"], "--data, --trust and --unconfined apply to --model-file"),
    (["advise", "t.csv", "--data", "t.xlsx"], "unknown kind '.xlsx'"),
])
def test_bad_model_file_usage_exits_2_with_one_line(tmp_path, args, needle):
    (tmp_path / "t.csv").write_text("a\n1\n")
    proc = persistbench(*args, cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_advise_refuses_a_payload_and_never_runs_it(tmp_path):
    path, canary = payload_file(tmp_path)
    proc = persistbench("advise", str(path), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 1
    assert "FLAGGED" in proc.stderr and "refused" in proc.stderr
    assert not canary.exists()
    assert not list(tmp_path.glob("results/*.json"))


@pytest.mark.slow
def test_even_a_trusted_file_never_runs_its_payload(tmp_path):
    """Trusting the flagged module gets past the static walk, not past the load stage: the
    confined load attempts `os.system`, and the file is refused before anything else."""
    path, canary = payload_file(tmp_path)
    env = {**os.environ, "PERSISTBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "persistbench", "advise", str(path), "--trust",
                             "posix" if os.name == "posix" else "nt", "--no-calibrate"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1 and "load-attempt" in err and "refused" in err
    assert not canary.exists()


@pytest.mark.slow
def test_advise_measures_a_user_model_with_its_table(user_model, tmp_path):
    out = tmp_path / "r.json"
    proc = persistbench("advise", str(user_model), "--data",
                        str(user_model.parent / "train.parquet"), "--formats",
                        "pickle,joblib,skops", "--repeat", "1", "--no-calibrate",
                        "--output", str(out), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "evaluation rows: 500 of 600 rows of train.parquet" in proc.stdout
    assert "verdict: file:model.joblib@" in proc.stdout and "report: " in proc.stdout
    data = json.loads(out.read_text())
    cells = data["cells"]
    assert {c["format"] for c in cells} == {"pickle", "joblib", "skops"}
    assert all(c["status"] == "ok" and c["roundtrip_equal"] for c in cells), cells
    (info,) = [m["model_info"] for m in data["run"]["models"].values()]
    assert info["evaluation_rows"].startswith("500 of 600 rows")
    assert info["file_sha256"] == hashlib.sha256(user_model.read_bytes()).hexdigest()


@pytest.mark.slow
def test_advise_without_data_asks_for_it_when_a_column_is_opaque(tmp_path):
    """The rows a model like `user_model` gets without --data: test_synthesized_rows_…"""
    opaque = train_in_script(tmp_path, "opaque")
    proc = persistbench("advise", str(opaque), "--no-calibrate", cwd=tmp_path,
                        cache=tmp_path / "cache")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass --data" in lines[0] and "FunctionTransformer" in lines[0]
    assert not list(tmp_path.glob("results/*.json"))


@pytest.mark.slow
def test_run_takes_a_model_file_beside_the_zoo(user_model, tmp_path):
    out = tmp_path / "r.json"
    proc = persistbench("run", "--model-file", str(user_model), "--data",
                        str(user_model.parent / "train.csv"), "--formats", "cloudpickle",
                        "--repeat", "1", "--no-calibrate",
                        "--output", str(out), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["model"].startswith("file:model.joblib@") and cell["size"] == "custom"
    assert cell["status"] == "ok" and cell["roundtrip_equal"]


@pytest.mark.slow
def test_a_skops_file_loads_with_exactly_the_types_the_audit_admitted(tmp_path, cache):
    import skops.io as sio

    est, _ = _fitted()
    path = tmp_path / "m.skops"
    sio.dump(est, path)
    entry = register(path, None, admit(path))
    assert entry.format == "skops"
    assert entry.skops_trusted == tuple(sorted(sio.get_untrusted_types(file=path)))
    loaded, X = resolve_spec(entry.name).build("custom", 0)
    assert np.array_equal(loaded.predict(X), est.predict(X))


def test_dataframe_rows_reach_a_server_with_names_and_dtypes(tmp_path):
    from persistbench.experiments.serving import load_input, save_input

    _, df = _fitted()
    path = save_input(df, tmp_path / "rows")
    assert path.suffix == ".parquet"
    back = load_input(path)
    assert list(back.columns) == list(df.columns)
    assert back["colour"].tolist() == df["colour"].tolist()


def test_onnx_refuses_mixed_dataframe_rows_by_name():
    from persistbench.sources.formats import Unsupported, onnx_input

    _, df = _fitted()
    with pytest.raises(Unsupported, match=r"non-numeric columns \(colour\)"):
        onnx_input(df)
    assert onnx_input(df[["x"]]).dtype == np.float32
