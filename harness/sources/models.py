"""The estimator zoo: real scikit-learn estimators trained on seeded synthetic data.

Each spec scales with a size so that the same model family can be looked at where
persistence cost is negligible (`small`) and where it dominates (`large`). Fitted models
are cached on disk, outside the repository, keyed by everything that changes the fitted
bytes, so a second run trains nothing and measurements never include training.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ("small", "medium", "large")
ZOO_VERSION = 2  # bump when a builder changes what it fits: it is part of the cache key
CUSTOM_SIZE = "custom"
MODEL_FILE_PREFIX = "file:"  # names of user model files (persistbench.sources.model_file)

Builder = Callable[[str, int], tuple[Any, Any]]


@dataclass(frozen=True)
class ModelSpec:
    """A named way to produce a fitted estimator and the X its predictions are checked on."""

    name: str
    build: Builder
    tags: tuple[str, ...] = ()
    description: str = ""
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""  # for user factories: "pkg.mod:factory"; for model files: the path
    # Facts about the fitted model to record beside its training outcome, e.g. where a model
    # file's evaluation rows came from: (size, seed) -> dict.
    info: Callable[[str, int], dict] | None = None

    def sizes(self) -> tuple[str, ...]:
        return (CUSTOM_SIZE,) if self.source else SIZES


def _classification(n_samples: int, n_features: int, seed: int, n_classes: int = 2,
                    flip_y: float = 0.01, n_informative: int | None = None):
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative or max(2, n_features // 2),
        n_redundant=0,
        n_classes=n_classes,
        flip_y=flip_y,
        random_state=seed,
    )


EVAL_BYTES = 4 * 2**20


def _eval_rows(X, n: int = 500):
    """Enough rows to check predictions, capped so wide data does not bloat the cache."""
    row_bytes = max(1, X[:1].nbytes)
    return X[: max(10, min(n, EVAL_BYTES // row_bytes))]


# Size parameters live in data, not code, so the cache key sees every one of them.
PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "logreg": {
        "small": {"n_samples": 2_000, "n_features": 20, "n_classes": 3},
        "medium": {"n_samples": 4_000, "n_features": 40_000, "n_classes": 40},
        "large": {"n_samples": 1_000, "n_features": 100_000, "n_classes": 50},
    },
    "ridge": {
        "small": {"n_samples": 2_000, "n_features": 50, "n_targets": 1},
        "medium": {"n_samples": 2_000, "n_features": 20_000, "n_targets": 100},
        "large": {"n_samples": 2_000, "n_features": 100_000, "n_targets": 700},
    },
    "random_forest": {
        "small": {"n_samples": 1_000, "n_features": 10, "n_estimators": 10, "max_depth": 6,
                  "n_classes": 2},
        "medium": {"n_samples": 20_000, "n_features": 20, "n_estimators": 40, "max_depth": None,
                   "n_classes": 2},
        # ten classes: every node stores a value row per class, which is what makes it big
        "large": {"n_samples": 150_000, "n_features": 20, "n_estimators": 100,
                  "max_depth": None, "n_classes": 10},
    },
    "hist_gb": {
        "small": {"n_samples": 1_000, "n_features": 10, "max_iter": 20, "n_classes": 3},
        "medium": {"n_samples": 50_000, "n_features": 50, "max_iter": 100, "n_classes": 10},
        "large": {"n_samples": 100_000, "n_features": 100, "max_iter": 300, "n_classes": 10},
    },
    "kneighbors": {
        "small": {"n_samples": 1_000, "n_features": 10},
        "medium": {"n_samples": 100_000, "n_features": 64},
        "large": {"n_samples": 1_000_000, "n_features": 100},
    },
    "svc": {
        "small": {"n_samples": 500, "n_features": 10},
        "medium": {"n_samples": 8_000, "n_features": 500},
        "large": {"n_samples": 10_000, "n_features": 1_000},
    },
    "mlp": {
        "small": {"n_samples": 500, "n_features": 20, "hidden": (32,)},
        "medium": {"n_samples": 500, "n_features": 1_000, "hidden": (2_000, 1_000)},
        "large": {"n_samples": 300, "n_features": 4_000, "hidden": (7_000, 3_000)},
    },
    "pca_pipeline": {
        "small": {"n_samples": 2_000, "n_features": 30, "n_components": 10},
        "medium": {"n_samples": 3_000, "n_features": 20_000, "n_components": 300},
        "large": {"n_samples": 3_000, "n_features": 50_000, "n_components": 500},
    },
    "text_pipeline": {
        "small": {"n_docs": 300, "vocabulary": 1_000, "ngram_max": 1},
        "medium": {"n_docs": 20_000, "vocabulary": 100_000, "ngram_max": 2},
        "large": {"n_docs": 100_000, "vocabulary": 400_000, "ngram_max": 2},
    },
    "custom_code": {
        "small": {"n_samples": 1_000, "n_features": 10},
        "medium": {"n_samples": 20_000, "n_features": 2_000},
        "large": {"n_samples": 10_000, "n_features": 5_000},
    },
}


def _build_logreg(size: str, seed: int):
    from sklearn.linear_model import LogisticRegression

    p = PARAMS["logreg"][size]
    X, y = _classification(p["n_samples"], p["n_features"], seed, n_classes=p["n_classes"],
                           n_informative=min(p["n_features"] // 2, 20))
    est = LogisticRegression(max_iter=50 if size != "small" else 500).fit(X, y)
    return est, _eval_rows(X)


def _build_ridge(size: str, seed: int):
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    p = PARAMS["ridge"][size]
    X, y = make_regression(n_samples=p["n_samples"], n_features=p["n_features"],
                           n_targets=p["n_targets"], noise=1.0, random_state=seed)
    return Ridge(alpha=1.0, solver="auto").fit(X, y), _eval_rows(X)


def _build_random_forest(size: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier

    p = PARAMS["random_forest"][size]
    # Noisy labels make fully grown trees large: that is the point of the big sizes.
    X, y = _classification(p["n_samples"], p["n_features"], seed, n_classes=p["n_classes"],
                           flip_y=0.3)
    est = RandomForestClassifier(n_estimators=p["n_estimators"], max_depth=p["max_depth"],
                                 random_state=seed, n_jobs=-1).fit(X, y)
    est.set_params(n_jobs=1)
    return est, _eval_rows(X)


def _build_hist_gb(size: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    p = PARAMS["hist_gb"][size]
    X, y = _classification(p["n_samples"], p["n_features"], seed, n_classes=p["n_classes"],
                           n_informative=min(p["n_features"], 10))
    est = HistGradientBoostingClassifier(max_iter=p["max_iter"], early_stopping=False,
                                         random_state=seed).fit(X, y)
    return est, _eval_rows(X)


def _build_kneighbors(size: str, seed: int, algorithm: str = "brute"):
    from sklearn.neighbors import KNeighborsClassifier

    p = PARAMS["kneighbors"][size]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((p["n_samples"], p["n_features"]))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    # Brute force keeps the stored training matrix as one array: the large-array case.
    est = KNeighborsClassifier(n_neighbors=5, algorithm=algorithm).fit(X, y)
    return est, _eval_rows(X, 200)


def _build_kneighbors_default(size: str, seed: int):
    """As users fit it: scikit-learn's `algorithm="auto"` (a KD-tree or ball tree here)."""
    return _build_kneighbors(size, seed, algorithm="auto")


def _build_svc(size: str, seed: int):
    from sklearn.svm import SVC

    p = PARAMS["svc"][size]
    X, y = _classification(p["n_samples"], p["n_features"], seed, flip_y=0.2)
    return SVC(kernel="rbf", gamma="scale", C=1.0).fit(X, y), _eval_rows(X, 200)


def _build_mlp(size: str, seed: int):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    p = PARAMS["mlp"][size]
    X, y = _classification(p["n_samples"], p["n_features"], seed, n_classes=3,
                           n_informative=min(p["n_features"], 10))
    est = MLPClassifier(hidden_layer_sizes=p["hidden"], max_iter=2 if size != "small" else 200,
                        solver="sgd" if size != "small" else "adam", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return est, _eval_rows(X, 200)


def _build_pca_pipeline(size: str, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    p = PARAMS["pca_pipeline"][size]
    X, y = _classification(p["n_samples"], p["n_features"], seed,
                           n_informative=min(p["n_features"] // 2, 20))
    pipe = make_pipeline(StandardScaler(),
                         PCA(n_components=p["n_components"], svd_solver="randomized",
                             random_state=seed),
                         LogisticRegression(max_iter=200))
    return pipe.fit(X, y), _eval_rows(X)


def synthetic_documents(n_docs: int, vocabulary: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Zipf-distributed words so the fitted vocabulary is large and made of many small strings."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i:x}" for i in range(vocabulary)])
    lengths = rng.integers(20, 60, size=n_docs)
    docs, labels = [], np.empty(n_docs, dtype=np.int64)
    for i, n in enumerate(lengths):
        ids = np.minimum(rng.zipf(1.2, size=n) - 1, vocabulary - 1)
        labels[i] = int(ids.sum() % 2)
        docs.append(" ".join(words[ids]))
    return docs, labels


def _build_text_pipeline(size: str, seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    p = PARAMS["text_pipeline"][size]
    docs, y = synthetic_documents(p["n_docs"], p["vocabulary"], seed)
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, p["ngram_max"])),
                         LogisticRegression(max_iter=100))
    return pipe.fit(docs, y), docs[:300]


def _build_custom_code(size: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    p = PARAMS["custom_code"][size]
    X, y = _classification(p["n_samples"], p["n_features"], seed,
                           n_informative=min(p["n_features"] // 2, 20))
    pipe = make_pipeline(FunctionTransformer(lambda Z: np.sign(Z) * np.log1p(np.abs(Z))),
                         LogisticRegression(max_iter=200))
    return pipe.fit(X, y), _eval_rows(X)


def _spec(name: str, build: Builder, tags: tuple[str, ...], description: str) -> ModelSpec:
    return ModelSpec(name=name, build=build, tags=tags, description=description,
                     params=PARAMS[name])


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _spec("logreg", _build_logreg, ("linear", "classifier"),
              "LogisticRegression: a dense coefficient matrix"),
        _spec("ridge", _build_ridge, ("linear", "regressor"), "Ridge regression, multi-target"),
        _spec("random_forest", _build_random_forest, ("trees", "classifier", "large-array"),
              "RandomForestClassifier with fully grown trees on noisy labels"),
        _spec("hist_gb", _build_hist_gb, ("trees", "classifier"),
              "HistGradientBoostingClassifier (the scikit-learn guide's own example)"),
        _spec("kneighbors", _build_kneighbors, ("neighbors", "classifier", "large-array"),
              "KNeighborsClassifier: stores its whole training matrix"),
        _spec("svc", _build_svc, ("kernel", "classifier"), "SVC with an RBF kernel"),
        _spec("mlp", _build_mlp, ("neural", "classifier", "large-array"),
              "MLPClassifier: a few big weight matrices"),
        _spec("pca_pipeline", _build_pca_pipeline, ("pipeline", "classifier"),
              "StandardScaler + PCA + LogisticRegression"),
        _spec("text_pipeline", _build_text_pipeline, ("pipeline", "text", "classifier"),
              "TfidfVectorizer + LogisticRegression: many small Python objects"),
        _spec("custom_code", _build_custom_code, ("pipeline", "custom-code", "classifier"),
              "FunctionTransformer(lambda) + LogisticRegression: needs cloudpickle"),
    )
}


# Zoo models as users build them, where the zoo departs from scikit-learn's defaults for its
# own reasons: resolvable by name, not part of the default zoo.
DEFAULT_VARIANTS: dict[str, ModelSpec] = {
    "kneighbors-auto": ModelSpec(
        name="kneighbors-auto", build=_build_kneighbors_default,
        tags=("neighbors", "classifier"),
        description='KNeighborsClassifier with algorithm="auto", as users fit it',
        params={size: {**p, "algorithm": "auto"} for size, p in PARAMS["kneighbors"].items()}),
}


class UsageError(ValueError):
    """Bad names or options given by the user; the CLI turns it into exit status 2."""


def user_spec(target: str) -> ModelSpec:
    """Wrap a user's `package.module:factory` so it plugs into the same cache and runner."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model {target!r}: expected 'package.module:factory'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model {target!r}: cannot import {module_name!r} ({exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--model {target!r}: {module_name} has no callable {attr!r}")
    source_file = getattr(module, "__file__", "") or ""
    digest = hashlib.sha256(Path(source_file).read_bytes()).hexdigest() if source_file else ""

    def build(size: str, seed: int):
        return factory()

    return ModelSpec(name=target, build=build, tags=("user",), description=f"user factory {target}",
                     params={CUSTOM_SIZE: {"source_sha256": digest}}, source=target)


# ---------------------------------------------------------------------------------- cache

LIBRARIES_IN_CACHE_KEY = ("scikit-learn", "numpy", "scipy", "cloudpickle")


def cache_dir() -> Path:
    """`$PERSISTBENCH_CACHE/models`, else the platform's user cache (XDG on Linux, ~/Library
    /Caches on macOS). platformdirs is imported only here: the compat environments run this
    module without it, and their servers get PERSISTBENCH_CACHE from the harness."""
    root = os.environ.get("PERSISTBENCH_CACHE")
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("persistbench", appauthor=False)
    return Path(root) / "models"


@functools.cache
def library_versions() -> dict[str, str]:
    """The installed versions in the cache key, read once per process (reading the
    packages' metadata took 15 ms, in every child that loads a cached model)."""
    from importlib.metadata import version

    return {lib: version(lib) for lib in LIBRARIES_IN_CACHE_KEY}


def cache_key(spec: ModelSpec, size: str, seed: int) -> str:
    payload = {
        "spec": spec.name,
        "zoo_version": ZOO_VERSION,
        "size": size,
        "seed": seed,
        "params": spec.params.get(size, {}),
        "python": platform.python_version(),
        "libs": library_versions(),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    safe = spec.name.replace(":", "_").replace(".", "_")
    return f"{safe}-{size}-{seed}-{digest[:16]}"


MODEL_FILE_TAG = "model-file"


def cache_path(spec: ModelSpec, size: str, seed: int) -> Path:
    """A user's model file gets a folder of its own: the confined child that loads it may
    write there and nowhere else in the cache, so it cannot tamper with other models."""
    key = cache_key(spec, size, seed)
    if MODEL_FILE_TAG in spec.tags:
        return cache_dir() / "files" / key / f"{key}.cloudpickle"
    return cache_dir() / f"{key}.cloudpickle"


def train_into_cache(spec: ModelSpec, size: str, seed: int) -> Path:
    """Fit and store (estimator, X_eval). cloudpickle, because custom-code models need it."""
    import cloudpickle

    path = cache_path(spec, size, seed)
    if path.exists():
        return path
    est, X_eval = spec.build(size, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        cloudpickle.dump((est, X_eval), fh, protocol=5)
    os.replace(tmp, path)
    return path


def load_cached(spec: ModelSpec, size: str, seed: int) -> tuple[Any, Any]:
    """Read a model the harness itself trained (a trusted file, never a user's file)."""
    import pickle

    with open(cache_path(spec, size, seed), "rb") as fh:
        return pickle.load(fh)
