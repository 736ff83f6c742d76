"""Regenerate `allowlist.json`: what the installed scikit-learn, numpy, scipy, joblib (and
pandas) pickle, their public API without side effects, and reviewed builtins.

    python -m persistbench.audit.allowlist     (or: persistbench audit --regenerate-allowlist)

Every estimator `sklearn.utils.all_estimators()` lists is built the way scikit-learn's own
common tests build it, fitted on small data (classification, then regression, then
unsupervised, then text), and written with pickle protocols 0-5, joblib (every protocol)
and cloudpickle; so are pipelines, searches, a categorical HistGradientBoosting, masked,
sparse, object and datetime arrays, random states and a model re-saved after a memory-mapped
load. Each stream is walked by the audit's own walker, so names are recorded exactly as the
audit later resolves them, with how they are used (called while loading, or only stored).
skops files of the same objects add the types and node kinds their schemas name. Names
that build callables or reach the system are never admitted from a run: they are reviewed
by shape in `policy.SHAPES` or stay flagged. These objects are made here, so loading them is
not at stake: nothing is loaded, only written and walked.

Added to what the runs record: the public classes and functions of the four libraries
(`publicapi`, with what it leaves out and why, kept in the list as `left_out`), the reviewed
names of `policy.REVIEWED_NAMES`, and, for scipy's distributions, whose `__setstate__` runs
their `_parse_arg_template` as code, the exact state scipy writes (`exec_state`).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import platform
import signal
import sys
import tempfile
import warnings
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from persistbench.audit.opcodes import Source, StreamError
from persistbench.audit.policy import (
    ALLOWLIST_FILE,
    DANGEROUS,
    DANGEROUS_BUILTINS,
    REVIEWED_NAMES,
    SHAPES,
)
from persistbench.audit.publicapi import public_names
from persistbench.audit.walker import PickleWalk, walk_stream

PROTOCOLS = range(0, pickle.HIGHEST_PROTOCOL + 1)
FIT_TIMEOUT_S = 20  # an option too slow on small data (some solvers) is skipped
SHIPPED_CODE = {"lambda-transformer"}  # written only by cloudpickle, which ships the code
# parameters whose string options change the objects a fitted model holds
VARIED = ("loss", "algorithm", "criterion", "metric", "solver", "kernel", "splitter")
METRIC_HOLDERS = ("sklearn.neighbors",)  # elsewhere a metric is kept as its name only


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(60, 4)))
    return X, (X[:, 0] > np.median(X[:, 0])).astype(int), rng.integers(0, 3, 60), X @ [1, 2, 3, 4]


def _fits(est, data) -> Iterator[Any]:
    """The estimator fitted on every kind of small data it accepts: binary and multiclass
    labels and regression targets hold different objects (losses, trees)."""
    from sklearn.base import clone

    X, y2, y3, yr = data
    texts = ["apple banana cherry", "banana cherry date", "cherry date egg"] * 20
    attempts = [(X, y2), (X, y3), (X, yr), (X,), (X, np_stack(y2, y3)), (texts,),
                ([{"a": 1, "b": 2}, {"a": 3, "c": 1}] * 30,), ([["a", "b"], ["c"]] * 30,)]
    if not est.__sklearn_tags__().target_tags.required:
        attempts = attempts[3:4] + attempts  # unsupervised first: labels would be ignored
    fitted = 0
    for args in attempts:
        signal.alarm(FIT_TIMEOUT_S)
        try:
            model = clone(est).fit(*args)
        except Exception:  # an estimator that needs other data, or too slow a variant
            continue
        finally:
            signal.alarm(0)
        fitted += 1
        yield model
        if len(args) == 1 and fitted:
            return  # unsupervised: one kind of data is enough


def _variants(est) -> Iterator[Any]:
    """The estimator with each string option of the parameters that change what it holds."""
    yield est
    constraints = getattr(type(est), "_parameter_constraints", {})
    params = est.get_params(deep=False)
    for param in VARIED:
        if param not in params or (param == "metric"
                                   and not type(est).__module__.startswith(METRIC_HOLDERS)):
            continue
        for constraint in constraints.get(param, []):
            for option in sorted(getattr(constraint, "options", ()) or (), key=str):
                if isinstance(option, str) and option != params[param]:
                    try:
                        yield clone_with(est, param, option)
                    except Exception:
                        continue


def clone_with(est, param: str, value: Any) -> Any:
    from sklearn.base import clone

    return clone(est).set_params(**{param: value})


def np_stack(a, b):
    """Two label columns: multi-output targets."""
    import numpy as np

    return np.c_[a, b]


def _estimators(data) -> Iterator[tuple[str, Any, bool]]:
    """(name, fitted model or the reason none fitted, written with every protocol?)."""
    from sklearn.utils import all_estimators
    from sklearn.utils._test_common.instance_generator import _construct_instances

    for name, cls in all_estimators():
        try:
            instances = list(_construct_instances(cls))[:1]
        except Exception:  # a class the common tests cannot build either
            instances = []
        fitted = 0
        for est in instances:
            for variant in _variants(est):
                for model in _fits(variant, data):
                    fitted += 1
                    yield name, model, variant is est
        if not fitted:
            yield name, RuntimeError(f"{name}: no small data fits it"), False


def _extras(data) -> Iterator[tuple[str, Any]]:
    """Objects models hold beyond plain estimators, and composite models."""
    import joblib
    import numpy as np
    from scipy import sparse, stats
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline, make_pipeline, make_union
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    X, _y2, y3, yr = data
    Xc = np.c_[np.arange(60) % 4, X[:, 1:]]
    yield "hgb-categorical", HistGradientBoostingClassifier(
        categorical_features=[0], max_iter=5).fit(Xc, y3)
    yield "hgb-categorical-reg", HistGradientBoostingRegressor(
        categorical_features=[0], max_iter=5).fit(Xc, yr)
    yield "pipeline", make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y3)
    # a label column that never varies is kept as a `_ConstantPredictor` (also inside
    # OutputCodeClassifier, whose variants may miss the fit timeout on a loaded machine)
    yield "one-vs-rest-constant", OneVsRestClassifier(LogisticRegression()).fit(
        X, np.c_[_y2, np.ones(len(X), dtype=int)])
    yield "union", make_union(StandardScaler(), FunctionTransformer(np.log1p)).fit(X, y3)
    yield "column-transformer", ColumnTransformer(
        [("cat", OneHotEncoder(), [0]), ("num", StandardScaler(), [1, 2])]).fit(Xc, y3)
    yield "grid-search", GridSearchCV(LogisticRegression(), {"C": [0.1, 1]}, cv=2).fit(X, y3)
    yield "random-search", RandomizedSearchCV(LogisticRegression(), {"C": [0.1, 1]}, n_iter=2,
                                              cv=2, random_state=0).fit(X, y3)
    yield "masked", np.ma.masked_array(X, X > 1)
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok"):
        yield f"sparse-{fmt}", sparse.random(5, 5, 0.3, format=fmt, random_state=0)
        yield f"sparse-array-{fmt}", sparse.random_array((5, 5), density=0.3, format=fmt,
                                                          random_state=0)
    yield "object-array", np.array(["a", 1, None, 2.5], dtype=object)
    yield "arrays", [np.zeros(3, dtype=t) for t in ("i1", "u2", "i4", "i8", "f2", "f4", "f8",
                                                     "c8", "c16", "?", "U3", "S3", "M8[ns]",
                                                     "m8[s]")] + [np.float64(1), np.int64(1),
                                                                  np.bool_(True), np.str_("a")]
    yield "random-search-distributions", RandomizedSearchCV(
        LogisticRegression(), {"C": stats.loguniform(1e-3, 1e2), "tol": stats.uniform(1e-4, 1),
                               "max_iter": stats.randint(50, 200)}, n_iter=2, cv=2,
        random_state=0).fit(X, y3)
    yield from _pandas_objects()
    yield "pipeline-memory", Pipeline([("scale", StandardScaler())], memory=joblib.Memory(
        Path(tempfile.gettempdir()) / "persistbench-allowlist-memory", verbose=0)).fit(X)
    yield "fortran", np.asfortranarray(X)
    yield "random-state", np.random.RandomState(0)
    yield "generator", np.random.default_rng(0)
    # code shipped by value (cloudpickle only): names its reconstructors use
    yield "lambda-transformer", FunctionTransformer(lambda x: np.log1p(x) + 1).fit(X)


def _pandas_objects() -> Iterator[tuple[str, Any]]:
    """What models fitted on frames may hold (pandas is optional: nothing without it)."""
    try:
        import pandas as pd
    except ImportError:
        return
    yield "pandas-frame", pd.DataFrame({
        "f": [1.0, 2.0], "i": [1, 2], "s": ["a", "b"], "c": pd.Categorical(["x", "y"]),
        "t": pd.date_range("2024-01-01", periods=2), "d": pd.to_timedelta([1, 2], "s"),
        "z": pd.date_range("2024-01-01", periods=2, tz="UTC"), "b": [True, False]})
    yield "pandas-series", pd.Series([1.0, 2.0], index=["a", "b"], name="s")
    yield "pandas-indexes", [pd.RangeIndex(3), pd.Index(["a"]), pd.Index([1.5]),
                             pd.MultiIndex.from_tuples([(1, "a")]), pd.CategoricalIndex(["a"]),
                             pd.DatetimeIndex(["2024-01-01"]), pd.period_range("2024", periods=2,
                                                                               freq="M"),
                             pd.interval_range(0, 2)]
    yield "pandas-scalars", [pd.Timestamp("2024-01-01"), pd.Timedelta("1D"), pd.NaT,
                             pd.Period("2024-01", "M"), pd.Interval(0, 1), pd.NA,
                             pd.Categorical(["a", "b"], ordered=True)]


def _exec_state() -> dict[str, dict]:
    """scipy's distributions `exec` their `_parse_arg_template` in `__setstate__`: per class,
    the state keys and templates scipy itself writes (from every distribution it publishes)."""
    from scipy import stats
    from scipy.stats._distn_infrastructure import rv_generic

    table: dict[str, dict] = {}
    for name in sorted(dir(stats)):
        dist = getattr(stats, name)
        if isinstance(dist, rv_generic):
            cls = type(dist)
            entry = table.setdefault(f"{cls.__module__}.{cls.__qualname__}",
                                     {"keys": set(), "code": {"_parse_arg_template": set()}})
            entry["keys"].update(dist.__getstate__())
            entry["code"]["_parse_arg_template"].add(dist._parse_arg_template)
    return {cls: {"keys": sorted(e["keys"]),
                  "code": {k: sorted(v) for k, v in e["code"].items()}}
            for cls, e in table.items()}


def _memmap_resaved(model: Any, folder: Path) -> Any:
    """A model loaded with `mmap_mode="r"` holds `numpy.memmap` arrays when saved again."""
    import joblib

    path = folder / "mm.joblib"
    joblib.dump(model, path)
    return joblib.load(path, mmap_mode="r")


def _walk(data: bytes, joblib: bool, names: dict, label: str) -> None:
    """Record the names one stream uses; a stream the walker cannot follow is a bug."""
    walk = PickleWalk("joblib.load" if joblib else "pickle.load", joblib=joblib)
    try:
        walk_stream(Source(io.BytesIO(data), True, len(data) + 1), walk)
    except StreamError as exc:
        raise SystemExit(f"the audit's walker cannot follow {label}: {exc}") from exc
    for key, uses in walk.names.items():
        names.setdefault(key, set()).update(uses)


def _dumps(obj: Any, folder: Path, full: bool) -> Iterator[tuple[bytes, bool]]:
    """Every protocol (Python 2 names, qualified names) and joblib for base objects; protocol
    5 for option variants, whose names differ from the base's only in what they hold."""
    import cloudpickle
    import joblib

    if not full:
        yield pickle.dumps(obj, protocol=5), False
        return
    path = folder / "obj.joblib"
    for protocol in PROTOCOLS:
        try:
            yield pickle.dumps(obj, protocol=protocol), False
            joblib.dump(obj, path, protocol=protocol)
            yield path.read_bytes(), True
        except (pickle.PicklingError, AttributeError, TypeError):
            continue  # a lambda: only cloudpickle writes it
    yield cloudpickle.dumps(obj), False


def _skops(obj: Any, names: dict, loaders: set) -> None:
    import zipfile

    import skops.io as sio

    from persistbench.audit.archive import _schema_nodes

    with zipfile.ZipFile(io.BytesIO(sio.dumps(obj))) as archive:
        schema = json.loads(archive.read("schema.json"))
    for node in _schema_nodes(schema):
        names.setdefault((node["__module__"], node["__class__"]), set()).add("skops")
        loaders.add(node["__loader__"])


def _reviewed(key: tuple[str, str]) -> bool:
    """Never admitted from a run: builders of callables and system access."""
    module, name = key
    if key in SHAPES:
        return True
    if module == "builtins":
        return name in DANGEROUS_BUILTINS
    return module.split(".")[0] in DANGEROUS


class _SlowFit(Exception):
    """A fit exceeded FIT_TIMEOUT_S."""


def _alarm(signum, frame):
    raise _SlowFit


def generate(out: Path = ALLOWLIST_FILE) -> dict:
    import cloudpickle
    import joblib
    import numpy as np
    import scipy
    import sklearn
    import skops

    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    data = _data()
    names: dict[tuple[str, str], set[str]] = {}
    loaders: set[str] = set()
    fitted, failed, skops_failed = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        extras = list(_extras(data))
        pipeline = next(obj for label, obj in extras if label == "pipeline")
        extras.append(("memmap-resaved", _memmap_resaved(pipeline, folder)))
        objects = chain(_estimators(data), ((label, obj, True) for label, obj in extras))
        for label, obj, full in objects:
            if isinstance(obj, Exception):
                failed.append(str(obj))
                continue
            fitted.append(label)
            if len(fitted) % 100 == 0:
                print(f"{len(fitted)} objects written ({label})", file=sys.stderr,
                      flush=True)
            for blob, is_joblib in _dumps(obj, folder, full):
                _walk(blob, is_joblib, names, f"{label} ({'joblib' if is_joblib else 'pickle'})")
            if label in SHIPPED_CODE:
                continue  # by value only: its `__main__` names must not enter the list
            try:
                _skops(obj, names, loaders)
            except Exception as exc:  # skops cannot write some objects
                skops_failed.append(f"{label}: {type(exc).__name__}")
    reviewed = sorted(f"{m}.{n}" for m, n in names if _reviewed((m, n)))
    admitted, left_out = public_names()
    for key, uses in chain(admitted.items(), ((k, v[0]) for k, v in REVIEWED_NAMES.items())):
        names.setdefault(key, set()).update(uses)
    table: dict[str, dict[str, list[str]]] = {}
    for (module, name), uses in sorted(names.items()):
        if not _reviewed((module, name)):
            table.setdefault(module, {})[name] = sorted(uses)
    result = {
        "command": "python -m persistbench.audit.allowlist",
        "generated_with": {"python": platform.python_version(), "numpy": np.__version__,
                           "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                           "joblib": joblib.__version__, "cloudpickle": cloudpickle.__version__,
                           "skops": skops.__version__, "pandas": _version("pandas")},
        "objects_written": len(fitted), "estimators": len(set(fitted)),
        "not_fitted": failed, "skops_not_written": skops_failed,
        "reviewed_not_admitted": reviewed,
        "size": sum(len(v) for v in table.values()),
        "public_api_admitted": len(admitted),
        "left_out": dict(sorted(left_out.items())),
        "skops_loaders": sorted(loaders),
        "exec_state": _exec_state(),
        "names": table,
    }
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    os.replace(tmp_out, out)
    return result


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> int:
    result = generate()
    print(f"{ALLOWLIST_FILE}: {result['size']} names from {result['objects_written']} objects "
          f"and {result['public_api_admitted']} public names ({len(result['left_out'])} left out "
          f"for side effects; {len(result['not_fitted'])} estimators not fitted on small data); "
          f"reviewed, not admitted: {', '.join(result['reviewed_not_admitted']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
