"""Real-world benign files for the audit: every one must audit clean (exit 0).

    python -m benchmarks.audit_corpus.benign [--folder DIR] [--output results.json]

Built from code, never from stored blobs, so the files are what the installed libraries
write today. Families:

- `named`: the models a static audit is known to refuse wrongly (GaussianProcess kernels,
  `make_column_selector`, `SelectKBest(chi2)`, isotonic and calibrated classifiers,
  `FrozenEstimator`, `numpy.expm1` as a target transform, `str.split` as a tokenizer,
  `Pipeline(memory=joblib.Memory)`, scipy distributions in a randomized search), each in
  pickle protocols 0, 2 and 5, joblib (plain and compressed), cloudpickle and skops;
- `builtins`: sets, frozensets, complex numbers, ranges, bytearrays, ordered and default
  dicts at every pickle protocol;
- `pandas`: frames, series, indexes and categoricals, and a model fitted on a frame;
- `sweep`: one instance of every estimator `sklearn.utils.all_estimators()` lists, fitted on
  small data (different data from the allow-list's generator), written in one format each,
  the formats taken in turn (the next one when a format cannot hold the estimator);
- `lightgbm`, `xgboost`, `imbalanced-learn` (the `corpus` extra): audited with `--trust` of
  their package alone; skipped, and said so, when the package is absent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

THIRD_PARTY = {"lightgbm": "lightgbm", "xgboost": "xgboost", "imbalanced-learn": "imblearn"}
# the formats the sweep takes in turn (one file per estimator)
SWEEP_FORMATS = ("pickle-p5", "joblib", "cloudpickle", "skops", "joblib-zlib", "pickle-p2",
                 "joblib-lz4", "pickle-p0", "joblib-gzip", "pickle-p4")
EVERY_PROTOCOL = tuple(f"pickle-p{p}" for p in range(pickle.HIGHEST_PROTOCOL + 1))
ALL_FORMATS = ("pickle-p0", "pickle-p2", "pickle-p5", "joblib", "joblib-zlib", "joblib-lzma",
               "cloudpickle", "skops")

# skops writes these but cannot load them back: not real-world files
SKOPS_CANNOT_LOAD = {"tokenizer-str-split": "skops writes str.split as builtins."
                                            "method_descriptor and cannot load it back"}


@dataclass
class BenignFile:
    name: str
    family: str
    format: str
    path: Path
    trust: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {**asdict(self), "path": str(self.path), "trust": list(self.trust)}


def write(obj: Any, fmt: str, path_stem: Path) -> Path:
    """`obj` written in `fmt` (pickle-pN, joblib[-codec], cloudpickle, skops)."""
    import cloudpickle
    import joblib
    import skops.io as sio

    kind, _, detail = fmt.partition("-")
    path = path_stem.with_name(f"{path_stem.name}.{fmt}")
    if kind == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=int(detail[1:])))
    elif kind == "joblib":
        joblib.dump(obj, path, compress=(detail, 3) if detail else 0)
    elif kind == "cloudpickle":
        path.write_bytes(cloudpickle.dumps(obj))
    elif kind == "skops":
        sio.dump(obj, path)
    else:
        raise ValueError(f"unknown format {fmt}")
    return path


def _data():
    import numpy as np

    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 5))
    return X, (X[:, 1] > 0).astype(int), rng.integers(0, 3, 80), X @ [0.5, -1, 2, 0, 1]


def _named(cache: Path) -> Iterator[tuple[str, Any]]:
    """The models named as refused wrongly, fitted (`cache`: a Memory's folder)."""
    import joblib
    import numpy as np
    import pandas as pd
    from scipy import stats
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import (
        ColumnTransformer,
        TransformedTargetRegressor,
        make_column_selector,
    )
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.frozen import FrozenEstimator
    from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.model_selection import RandomizedSearchCV
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    X, y2, y3, yr = _data()
    texts = [f"alpha{i % 5} beta{i % 3} gamma{i % 7}" for i in range(80)]
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": list("xyz" * 26 + "xy")})
    yield "gp-regressor-sum-white", GaussianProcessRegressor(
        ConstantKernel() * RBF() + WhiteKernel(), random_state=0).fit(X[:30], yr[:30])
    yield "gp-classifier", GaussianProcessClassifier(RBF(), random_state=0).fit(X[:30], y2[:30])
    yield "column-selector", make_pipeline(ColumnTransformer(
        [("num", StandardScaler(), make_column_selector(dtype_include=np.number)),
         ("cat", OneHotEncoder(), make_column_selector(dtype_include=object))]),
        LogisticRegression()).fit(frame, y2)
    yield "select-k-best-chi2", make_pipeline(MinMaxScaler(), SelectKBest(chi2, k=3),
                                              LogisticRegression()).fit(X, y3)
    yield "isotonic", IsotonicRegression(out_of_bounds="clip").fit(X[:, 0], yr)
    yield "calibrated-isotonic", CalibratedClassifierCV(SVC(), method="isotonic",
                                                        cv=3).fit(X, y2)
    yield "calibrated-sigmoid", CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X, y3)
    yield "frozen-calibrated", CalibratedClassifierCV(
        FrozenEstimator(LogisticRegression().fit(X, y2))).fit(X, y2)
    yield "target-expm1", TransformedTargetRegressor(
        Ridge(), func=np.log1p, inverse_func=np.expm1).fit(X, np.abs(yr))
    yield "tokenizer-str-split", make_pipeline(
        TfidfVectorizer(tokenizer=str.split, token_pattern=None, stop_words=["beta1"]),
        LogisticRegression()).fit(texts, y2)
    yield "count-vectorizer-stop-words", CountVectorizer(stop_words="english").fit(texts)
    for where, location in (("no-cache", None), ("cache-folder", cache)):
        yield f"pipeline-memory-{where}", Pipeline(
            [("scale", StandardScaler()), ("lr", LinearRegression())],
            memory=joblib.Memory(location=location, verbose=0)).fit(X, yr)
    yield "random-search-scipy", RandomizedSearchCV(
        LogisticRegression(), {"C": stats.loguniform(1e-3, 1e2), "tol": stats.uniform(1e-4, 1e-3),
                               "max_iter": stats.randint(50, 200)},
        n_iter=3, cv=2, random_state=0).fit(X, y2)


def _builtins() -> Iterator[tuple[str, Any]]:
    """Plain Python values models hold, alone and inside an estimator's attributes."""
    from collections import OrderedDict, defaultdict

    from sklearn.preprocessing import StandardScaler

    holder = StandardScaler().fit([[0.0], [1.0]])
    holder.extras_ = {"tags": {"a", "b"}, "frozen": frozenset({1, 2}), "z": 1 + 2j,
                      "r": range(0, 10, 2), "raw": bytearray(b"xy"), "order": OrderedDict(a=1),
                      "counts": defaultdict(list, {"k": [1]}), "nested": [(1.5, None, True)],
                      "slice": slice(1, 5, 2), "ellipsis": ..., "big": 10 ** 30}
    yield "values", holder.extras_
    yield "estimator-with-values", holder


def _pandas() -> Iterator[tuple[str, Any]]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"f": np.arange(4.0), "i": np.arange(4), "s": list("abcd"),
                          "c": pd.Categorical(list("xyxy")),
                          "t": pd.date_range("2024-01-01", periods=4),
                          "b": [True, False, True, False]})
    yield "frame", frame
    yield "series", pd.Series([1.0, 2.0], index=["a", "b"], name="s")
    yield "indexes", [pd.RangeIndex(3), pd.Index(["a", "b"]), pd.MultiIndex.from_tuples(
        [(1, "a"), (2, "b")]), pd.DatetimeIndex(["2024-01-01"]), pd.CategoricalIndex(["a"])]
    yield "categorical", pd.Categorical(["a", "b", "a"], ordered=True)
    yield "timestamps", [pd.Timestamp("2024-01-01"), pd.Timedelta("1D"), pd.NaT]
    model = LinearRegression().fit(frame[["f", "i"]], frame["f"] * 2)
    model.training_frame_ = frame[["f", "i"]]
    yield "model-holding-frame", model


def _third_party(package: str) -> Iterator[tuple[str, Any]]:
    X, y2, y3, yr = _data()
    if package == "lightgbm":
        import lightgbm as lgb

        yield "classifier", lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y3)
        yield "regressor", lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, yr)
        yield "ranker-booster", lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(
            X, yr).booster_
    elif package == "xgboost":
        import xgboost as xgb

        yield "classifier", xgb.XGBClassifier(n_estimators=5, n_jobs=1).fit(X, y3)
        yield "regressor", xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(X, yr)
    else:
        from imblearn.ensemble import BalancedRandomForestClassifier
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import make_pipeline
        from imblearn.under_sampling import RandomUnderSampler
        from sklearn.linear_model import LogisticRegression

        yield "smote-pipeline", make_pipeline(SMOTE(random_state=0),
                                              LogisticRegression()).fit(X, y2)
        yield "under-sampler", RandomUnderSampler(random_state=0)
        yield "balanced-forest", BalancedRandomForestClassifier(
            n_estimators=5, random_state=0, sampling_strategy="all", replacement=True,
            bootstrap=False).fit(X, y2)


def _sweep() -> Iterator[tuple[str, Any]]:
    """Every estimator scikit-learn lists, built as its common tests build it, fitted on
    the first kind of small data it accepts."""
    import numpy as np
    from sklearn.base import clone
    from sklearn.utils import all_estimators
    from sklearn.utils._test_common.instance_generator import _construct_instances

    X, y2, y3, yr = _data()
    X = abs(X)  # some estimators take only non-negative features (chi2, NMF, naive Bayes)
    texts = ["red green blue", "green blue cyan", "blue cyan red"] * 20
    attempts = [(X, y3), (X, yr), (X,), (texts,), (X, y2), ([{"a": 1}, {"b": 2}] * 20,),
                (X, np.c_[y2, y3]), (X, np.c_[yr, -yr]), (X, abs(yr) + 0.1),  # multi-output,
                (X[:, 0], yr), (X @ X.T,)]  # positive targets, one feature, a kernel matrix
    for name, cls in all_estimators():
        try:
            est = next(iter(_construct_instances(cls)))
        except Exception:  # a class the common tests cannot build either
            continue
        for args in attempts:
            try:
                yield name, clone(est).fit(*args)
                break
            except Exception:  # needs other data: try the next kind
                continue


def write_corpus(folder: Path) -> tuple[list[BenignFile], list[str]]:
    """(files written, notes on what was skipped and why)."""
    folder.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    files: list[BenignFile] = []
    notes: list[str] = []

    def add(family: str, name: str, obj: Any, formats, trust=()) -> None:
        for fmt in formats:
            if fmt == "skops" and name in SKOPS_CANNOT_LOAD:
                notes.append(f"{family} {name} skops: {SKOPS_CANNOT_LOAD[name]}")
                continue
            try:
                path = write(obj, fmt, folder / f"{family}-{name}")
            except Exception as exc:  # a format that cannot hold this object
                notes.append(f"{family} {name} {fmt}: not written ({type(exc).__name__})")
                continue
            files.append(BenignFile(f"{family} {name}", family, fmt, path, trust))

    sources: list[tuple[str, Callable[[], Iterator[tuple[str, Any]]], tuple, tuple]] = [
        ("named", lambda: _named(folder / "memory-cache"), ALL_FORMATS, ()),
        ("builtins", _builtins, (*EVERY_PROTOCOL, "joblib", "cloudpickle"), ()),
        ("pandas", _pandas, ("pickle-p2", "pickle-p5", "joblib", "cloudpickle"), ()),
    ]
    for family, module in THIRD_PARTY.items():
        if importlib.util.find_spec(module) is None:
            notes.append(f"{family}: not installed (pip install 'persistbench[corpus]')")
            continue
        sources.append((family, lambda p=family: _third_party(p),
                        ("pickle-p5", "pickle-p2", "joblib", "joblib-zlib", "cloudpickle"),
                        (module,)))
    for family, make, formats, trust in sources:
        for name, obj in make():
            add(family, name, obj, formats, trust)
    for i, (name, est) in enumerate(_sweep()):
        turn = SWEEP_FORMATS[i % len(SWEEP_FORMATS):] + SWEEP_FORMATS[:i % len(SWEEP_FORMATS)]
        before = len(files)
        for fmt in turn:  # the next format when this one cannot hold the estimator
            add("sweep", name, est, (fmt,))
            if len(files) > before:
                break
    return files, notes


def audit_all(files: list[BenignFile]) -> list[dict]:
    """Audit every file (static walk), as `persistbench audit --static-only` would."""
    from persistbench.audit import Unreadable, audit

    rows = []
    for f in files:
        start = time.perf_counter()
        try:
            report = audit(f.path, f.trust)
            status = report.exit_status
            findings = [f"{x.kind}: {x.name} ({x.reason})" for x in report.findings]
        except Unreadable as exc:
            status, findings = 2, [f"not a model file: {exc}"]
        rows.append({**f.to_json(), "exit_status": status, "findings": findings[:5],
                     "audit_s": time.perf_counter() - start})
    return rows


def summarize(rows: list[dict], notes: list[str]) -> dict:
    flagged = [r for r in rows if r["exit_status"] != 0]
    return {
        "benign_files": len(rows),
        "by_format": dict(sorted(Counter(r["format"] for r in rows).items())),
        "by_family": dict(sorted(Counter(r["family"] for r in rows).items())),
        "flagged": len(flagged),
        "flagged_files": [f"{r['name']} [{r['format']}]: {'; '.join(r['findings'][:2])}"
                          for r in flagged],
        "audit_s_total": round(sum(r["audit_s"] for r in rows), 3),
        "audit_s_max": round(max((r["audit_s"] for r in rows), default=0.0), 3),
        "skipped": notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_corpus.benign",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="where to write the files (default: a "
                        "temporary folder, removed afterwards)")
    parser.add_argument("--output", type=Path, help="write every file's audit as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files, notes = write_corpus(args.folder or Path(tmp))
        rows = audit_all(files)
    summary = summarize(rows, notes)
    if args.output:
        args.output.write_text(json.dumps({"summary": summary, "files": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    return 1 if summary["flagged"] else 0


if __name__ == "__main__":
    sys.exit(main())
