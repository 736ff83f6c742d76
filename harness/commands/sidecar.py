"""A JSON sidecar saved beside a model: what is needed to trust, reload or rebuild it later.

scikit-learn's persistence guide asks for the training data (or a reference to an immutable
snapshot), the source that produced the model, the versions of scikit-learn and its
dependencies, and a cross-validation score, so that a model can be checked against a new
environment and rebuilt when it no longer loads. `save` writes the model with any format of
`persistbench.sources.formats` and that sidecar (`<model file>.meta.json`); `check` compares a
sidecar with
the running environment and, given data, re-scores the model in a child process (the model
file is never loaded in the checking process itself).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from persistbench.measure.machine import package_versions
from persistbench.results.schema import write_atomic
from persistbench.sources.formats import FORMATS, Format
from persistbench.sources.models import UsageError

SCHEMA = "persistbench-sidecar/1"
SUFFIX = ".meta.json"
CORE_LIBRARIES = ("scikit-learn", "numpy", "scipy")
EXACT = 1e-12  # the same model on the same data must give the same score, up to rounding
RESCORE_TIMEOUT_S = 600.0


def sidecar_path(model_path: Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def array_fingerprint(array: Any) -> dict:
    """sha256 over dtype, shape and the C-ordered bytes: equal data gives equal hashes."""
    arr = np.ascontiguousarray(np.asarray(array))
    if arr.dtype.kind == "O":
        raise UsageError("data with Python objects cannot be fingerprinted; pass a numeric or "
                         "string array (.npy saved with allow_pickle=False)")
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.tobytes())
    return {"sha256": digest.hexdigest(), "shape": list(arr.shape), "dtype": arr.dtype.str}


def serializer_distributions(fmt: Format) -> list[str]:
    """The installed distributions a format's files depend on (pickle itself is Python's)."""
    names = [name for name in fmt.library.split("+") if name != "pickle"]
    if fmt.compression and fmt.compression.startswith("lz4"):
        names.append("lz4")
    if "skl2onnx" in names:
        names.append("onnx")
    return names


def environment_versions(fmt: Format) -> dict[str, str | None]:
    return {"python": platform.python_version(),
            **package_versions((*CORE_LIBRARIES, *serializer_distributions(fmt)))}


def platform_info() -> dict:
    return {"system": platform.system(), "machine": platform.machine(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform()}


def script_info(script: Path | None) -> dict | None:
    """The source that produced the model: by default the running program's main file."""
    if script is None:
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        script = Path(main_file) if main_file else None
    if script is None or not Path(script).is_file():
        return None
    path = Path(script).resolve()
    return {"path": str(path), "sha256": file_sha256(path)}


def estimator_type(est: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    return "classifier" if is_classifier(est) else "regressor" if is_regressor(est) else "other"


def score(est: Any, X: Any, y: Any, scoring: str | None) -> float:
    from sklearn.metrics import get_scorer

    return float(get_scorer(scoring)(est, X, y) if scoring else est.score(X, y))


def cross_validation(est: Any, X: Any, y: Any, folds: int, scoring: str | None) -> dict:
    """Refits clones of the estimator: the score a rebuilt model can be compared with."""
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    scores = cross_val_score(clone(est), X, y, cv=folds, scoring=scoring)
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "folds": folds,
            "scores": [float(s) for s in scores]}


def save(est: Any, path: Path, fmt_name: str, *, X_sample: Any = None, X_train: Any = None,
         y_train: Any = None, data_reference: str | None = None, script: Path | None = None,
         cv_folds: int | None = None, cv_score: float | None = None,
         scoring: str | None = None) -> dict:
    """Write the model with `fmt_name` and its sidecar; return the sidecar.

    `X_sample` is what ONNX conversion needs to know the input (defaults to X_train rows).
    """
    if fmt_name not in FORMATS:
        raise UsageError(f"unknown format {fmt_name!r}; valid: {', '.join(FORMATS)}")
    if cv_folds and (X_train is None or y_train is None):
        raise UsageError("cross-validation needs the training data: X and y")
    fmt = FORMATS[fmt_name]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = X_sample if X_sample is not None else X_train
    info = fmt.dump(est, path, sample)

    data: dict[str, Any] = {"reference": data_reference}
    if X_train is not None:
        data["X"] = array_fingerprint(X_train)
    if y_train is not None:
        data["y"] = array_fingerprint(y_train)
    scores: dict[str, Any] = {"scoring": scoring, "training": None, "cv": None}
    if X_train is not None and y_train is not None:
        scores["training"] = score(est, X_train, y_train, scoring)
    if cv_folds:
        scores["cv"] = cross_validation(est, X_train, y_train, cv_folds, scoring)
    elif cv_score is not None:
        scores["cv"] = {"mean": float(cv_score), "std": None, "folds": None, "scores": None}

    sidecar = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": path.name, "sha256": file_sha256(path),
                  "bytes": path.stat().st_size, "format": fmt_name,
                  "estimator": f"{type(est).__module__}.{type(est).__qualname__}",
                  "estimator_type": estimator_type(est), **info},
        "training_data": data,
        "source": script_info(script),
        "versions": environment_versions(fmt),
        "platform": platform_info(),
        "score": scores,
    }
    write_atomic(sidecar_path(path), sidecar)
    return sidecar


# ------------------------------------------------------------------------------- check

@dataclass
class Finding:
    """One comparison of a sidecar entry with the present."""

    what: str
    saved: Any
    now: Any
    matches: bool
    fatal: bool = False  # a mismatch here makes `check` exit non-zero

    def line(self) -> str:
        tag = "ok      " if self.matches else ("MISMATCH" if self.fatal else "differs ")
        return f"{tag} {self.what}: saved {_short(self.saved)}, now {_short(self.now)}"


def _short(value: Any) -> Any:
    """A sha256 is recognisable by its first 12 hex digits; the JSON output keeps all 64."""
    text = str(value)
    return f"{text[:12]}…" if len(text) == 64 and all(c in "0123456789abcdef" for c in text) \
        else value


def same(what: str, saved: Any, now: Any, fatal: bool = False) -> Finding:
    return Finding(what, saved, now, saved == now, fatal)


def read_sidecar(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no sidecar; pass --sidecar FILE if it lives elsewhere") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON sidecar ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: not a {SCHEMA} sidecar")
    return data


def compare_environment(sidecar: dict, model_path: Path) -> list[Finding]:
    """Every recorded fact against the present: file, versions, platform, source."""
    fmt = FORMATS.get(sidecar["model"]["format"])
    if fmt is None:
        raise UsageError(f"sidecar names unknown format {sidecar['model']['format']!r}")
    found = [same("model file sha256", sidecar["model"]["sha256"], file_sha256(model_path),
                  fatal=True)]
    now = environment_versions(fmt)
    for dist, saved in sidecar["versions"].items():
        current = now[dist] if dist in now else package_versions((dist,))[dist]
        found.append(same(dist, saved, current, fatal=dist == "scikit-learn"))
    here = platform_info()
    found += [same(f"platform {key}", sidecar["platform"].get(key), here[key])
              for key in ("system", "machine", "implementation")]
    source = sidecar.get("source")
    if source:
        path = Path(source["path"])
        found.append(same(f"source {path}", source["sha256"],
                          file_sha256(path) if path.is_file() else "missing"))
    return found


def rescore_child(model_path: str, fmt_name: str, X_path: str, y_path: str,
                  scoring: str | None, est_type: str, result_path: str) -> None:
    """Child entry point: load the model and score it (never in the checking process)."""
    from persistbench.sources.formats import describe_exception, predict

    fmt = FORMATS[fmt_name]
    X, y = load_array(Path(X_path)), load_array(Path(y_path))
    try:
        obj = fmt.load(Path(model_path), fmt.prepare_load(Path(model_path)))
        if fmt.needs_python_object:
            value = score(obj, X, y, scoring)
        elif scoring is None and est_type in ("classifier", "regressor"):
            from sklearn.metrics import accuracy_score, r2_score

            labels, _ = predict(fmt, obj, X)
            value = (accuracy_score if est_type == "classifier" else r2_score)(y, labels)
        else:
            raise ValueError(f"an ONNX model can only be re-scored with the default "
                             f"scoring of a classifier or regressor, not {scoring!r}")
        outcome = {"status": "ok", "score": float(value)}
    except Exception as exc:
        outcome = {"status": "error", "reason": describe_exception(exc)}
    write_atomic(Path(result_path), outcome)


def rescore(sidecar: dict, model_path: Path, X_path: Path, y_path: Path,
            tolerance: float) -> list[Finding]:
    """Score on the given data; the same data must give the training score exactly, other
    data the cross-validation score within `tolerance` (or 3 standard deviations)."""
    import tempfile

    from persistbench.schedule.children import run_child

    X, y = load_array(X_path), load_array(y_path)
    with tempfile.TemporaryDirectory(prefix="persistbench-check-") as tmp:
        outcome = run_child(rescore_child, (str(model_path), sidecar["model"]["format"],
                                            str(X_path), str(y_path),
                                            sidecar["score"]["scoring"],
                                            sidecar["model"]["estimator_type"]),
                            Path(tmp) / "score.json", RESCORE_TIMEOUT_S)
    if outcome["status"] != "ok":
        return [Finding("re-score", "a score", f"{outcome['status']}: {outcome['reason']}",
                        False, fatal=True)]
    value = outcome["score"]
    scores, data = sidecar["score"], sidecar["training_data"]
    same_data = (data.get("X", {}).get("sha256") == array_fingerprint(X)["sha256"]
                 and data.get("y", {}).get("sha256") == array_fingerprint(y)["sha256"])
    if same_data and scores.get("training") is not None:
        # The saved score is scikit-learn's; ONNX predicts in float32, so it gets the tolerance.
        limit = EXACT if FORMATS[sidecar["model"]["format"]].needs_python_object else tolerance
        saved = scores["training"]
        return [Finding("score on the training data", saved, value,
                        abs(value - saved) <= limit, fatal=True)]
    cv = scores.get("cv")
    if cv is None:
        return [Finding("score on the given data (no saved score to compare with)", None,
                        value, True)]
    allowed = max(tolerance, 3 * (cv.get("std") or 0.0))
    return [Finding("score on the given data vs cross-validation",
                    f"{cv['mean']:.4f} ± {allowed:.4f}", round(value, 6),
                    abs(value - cv["mean"]) <= allowed, fatal=True)]


def load_array(path: Path) -> np.ndarray:
    """A .npy file, never with pickled objects inside (a data file must not run code)."""
    path = Path(path)
    if path.suffix != ".npy":
        raise UsageError(f"{path}: expected a .npy file (numpy.save(..., allow_pickle=False))")
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except ValueError as exc:
        raise UsageError(f"{path}: cannot read it as a plain .npy array ({exc})") from None


def check(model_path: Path, sidecar_file: Path | None = None,
          data: tuple[Path, Path] | None = None, tolerance: float = 0.05) -> list[Finding]:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UsageError(f"{model_path}: no such model file")
    sidecar = read_sidecar(sidecar_file or sidecar_path(model_path))
    found = compare_environment(sidecar, model_path)
    if data:
        found += rescore(sidecar, model_path, data[0], data[1], tolerance)
    return found


def findings_json(found: list[Finding]) -> list[dict]:
    return [asdict(f) for f in found]


def fitted_from_source(source: str, seed: int = 0) -> tuple[Any, Any, Path | None, str]:
    """A fitted estimator from `zoo-name[@size]` or `package.module:factory`, with the file
    that builds it and a reference to its training data recipe."""
    import importlib
    import inspect

    from persistbench.sources import models
    from persistbench.sources.resolve import resolve_spec

    name, _, size = source.partition("@")
    spec = resolve_spec(name)
    if spec.source:
        if size:
            raise UsageError(f"{source!r}: a factory has no sizes; drop '@{size}'")
        size = models.CUSTOM_SIZE
    size = size or "small"
    if size not in spec.sizes():
        raise UsageError(f"{source!r}: unknown size {size!r}; valid: {', '.join(spec.sizes())}")
    models.train_into_cache(spec, size, seed)
    est, X_eval = models.load_cached(spec, size, seed)
    builder = importlib.import_module(spec.source.partition(":")[0]) if spec.source else \
        spec.build
    script = Path(inspect.getsourcefile(builder) or "")
    reference = f"{spec.description or name} ({source}, seed {seed}, params " \
                f"{json.dumps(spec.params.get(size, {}), sort_keys=True, default=str)})"
    return est, X_eval, script, reference
