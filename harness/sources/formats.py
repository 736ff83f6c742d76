"""The persistence formats, each one entry: how to dump, how to load, what it implies.

A format that cannot handle a model raises `Unsupported` with the library's own message;
that is a finding to record, not a crash. Loading is split in two: `prepare_load` does what a
careful user does once before loading (skops: review the untrusted types), `load` is what is
timed.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class Unsupported(Exception):
    """This format cannot persist this model; the message is the library's own."""


def describe_exception(exc: BaseException) -> str:
    """One line: the exception and, when it wraps another, the root cause that explains it."""

    def line(e: BaseException) -> str:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0][:300] if text else ''}"

    root = exc
    while root.__cause__ or root.__context__:
        root = root.__cause__ or root.__context__
    return line(exc) if root is exc else f"{line(exc)} (caused by {line(root)})"


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    library: str
    dump_fn: Callable[[Any, Path, Any], dict]
    load_fn: Callable[[Path, dict], Any]
    executes_code_on_load: bool
    needs_python_object: bool = True  # False: the artefact is served without the estimator
    memory_maps: bool = False
    compression: str | None = None
    prepare_fn: Callable[[Path], dict] | None = None

    def dump(self, est: Any, path: Path, X_sample: Any) -> dict:
        """Dump, turning any library failure into `Unsupported` with its message."""
        try:
            return self.dump_fn(est, Path(path), X_sample) or {}
        except Unsupported:
            raise
        except Exception as exc:  # the library refused this model: that is the finding
            raise Unsupported(describe_exception(exc)) from exc

    def prepare_load(self, path: Path) -> dict:
        return self.prepare_fn(Path(path)) if self.prepare_fn else {}

    def load(self, path: Path, prepared: dict) -> Any:
        # A new Path per call cost 3 µs, 15 % of a 20 µs load timed through here.
        return self.load_fn(path if isinstance(path, Path) else Path(path), prepared)

    def traits(self) -> dict:
        return {
            "library": self.library,
            "executes_code_on_load": self.executes_code_on_load,
            "needs_python_object": self.needs_python_object,
            "memory_maps": self.memory_maps,
            "compression": self.compression,
        }


# ------------------------------------------------------------------------- pickle family

def _pickle_dump(protocol: int | None):
    def dump(est, path: Path, X_sample) -> dict:
        used = pickle.DEFAULT_PROTOCOL if protocol is None else protocol
        with open(path, "wb") as fh:
            pickle.dump(est, fh, protocol=used)
        return {"pickle_protocol": used}

    return dump


def _pickle_load(path: Path, prepared: dict):
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _joblib_dump(compress):
    def dump(est, path: Path, X_sample) -> dict:
        import joblib

        joblib.dump(est, path, compress=compress)
        return {"pickle_protocol": pickle.HIGHEST_PROTOCOL}

    return dump


def _joblib_load(mmap_mode: str | None):
    def load(path: Path, prepared: dict):
        import joblib

        return joblib.load(path, mmap_mode=mmap_mode)

    return load


def _cloudpickle_dump(est, path: Path, X_sample) -> dict:
    import cloudpickle

    with open(path, "wb") as fh:
        cloudpickle.dump(est, fh)
    return {"pickle_protocol": cloudpickle.DEFAULT_PROTOCOL}


def _cloudpickle_load(path: Path, prepared: dict):
    import cloudpickle

    with open(path, "rb") as fh:
        return cloudpickle.load(fh)


# ---------------------------------------------------------------------------------- skops

def _skops_dump(est, path: Path, X_sample) -> dict:
    import skops.io as sio

    sio.dump(est, path)
    return {}


def _skops_prepare(path: Path) -> dict:
    """What a user must review before loading: skops refuses these types unless trusted."""
    import skops.io as sio

    return {"skops_untrusted_types": sorted(sio.get_untrusted_types(file=path))}


def _skops_load(path: Path, prepared: dict):
    import skops.io as sio

    return sio.load(path, trusted=prepared.get("skops_untrusted_types", []))


# ----------------------------------------------------------------------------------- ONNX

def onnx_input(X: Any) -> np.ndarray:
    """The tensor ONNX models are fed: float32 for numbers, an (n, 1) column for strings.

    One tensor only: a DataFrame with non-numeric columns would need one typed ONNX input
    per column, which is not built here, so it is refused by name instead of failing in numpy.
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None:
        other = [str(c) for c, dt in dtypes.items() if dt.kind not in "biuf"]
        if other:
            raise Unsupported(f"rows are a DataFrame with non-numeric columns "
                              f"({', '.join(other[:5])}); ONNX conversion here feeds one "
                              "numeric tensor, not one input per column")
    if isinstance(X, list | tuple) or (isinstance(X, np.ndarray) and X.dtype.kind in "OUS"):
        return np.asarray(X, dtype=object).reshape(-1, 1)
    return np.asarray(X, dtype=np.float32)


def onnx_options(est: Any) -> dict:
    """Plain probability arrays instead of ZipMap dicts, and a text locale every libc has.

    onnxruntime's StringNormalizer defaults to en_US.UTF-8, which minimal Linux images lack.
    """
    from sklearn.base import is_classifier
    from sklearn.feature_extraction.text import CountVectorizer

    found = [est, *(step for _, step in getattr(est, "steps", []))]
    options = {id(e): {"zipmap": False} for e in found if is_classifier(e)}
    options.update({id(e): {"locale": "C.UTF-8"} for e in found
                    if isinstance(e, CountVectorizer)})
    return options


def _require_onnx() -> None:
    """An ONNX cell without the ONNX stack is `unsupported`, naming the extra to install."""
    from persistbench.sources.extras import missing

    problem = missing("onnx")
    if problem:
        raise Unsupported(f"ONNX needs {problem}")


def convert_to_onnx(est: Any, X_sample: Any):
    """skl2onnx conversion; exposed so the inference experiment times the same call."""
    _require_onnx()
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    x = onnx_input(X_sample[:1])
    if x.dtype == object:
        return to_onnx(est, initial_types=[("input", StringTensorType([None, 1]))],
                       options=onnx_options(est))
    return to_onnx(est, x, options=onnx_options(est), target_opset=None)


def _onnx_dump(est, path: Path, X_sample) -> dict:
    model = convert_to_onnx(est, X_sample)
    path.write_bytes(model.SerializeToString())
    opsets = {d.domain or "ai.onnx": d.version for d in model.opset_import}
    return {"onnx_opsets": opsets}


def onnx_session(path: Path, threads: int = 1):
    _require_onnx()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # failures surface as exceptions, recorded in the cell
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_load(path: Path, prepared: dict):
    return onnx_session(path)


# ------------------------------------------------------------------------------ registry

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("pickle", ".pkl", "pickle", _pickle_dump(None), _pickle_load, True),
        Format("pickle-p5", ".p5.pkl", "pickle", _pickle_dump(5), _pickle_load, True),
        Format("joblib", ".joblib", "joblib", _joblib_dump(0), _joblib_load(None), True),
        Format("joblib-mmap", ".joblib", "joblib", _joblib_dump(0), _joblib_load("r"), True,
               memory_maps=True),
        Format("joblib-zlib3", ".joblib.z", "joblib", _joblib_dump(("zlib", 3)),
               _joblib_load(None), True, compression="zlib-3"),
        Format("joblib-lz4", ".joblib.lz4", "joblib", _joblib_dump(("lz4", 3)),
               _joblib_load(None), True, compression="lz4-3"),
        Format("joblib-lzma", ".joblib.xz", "joblib", _joblib_dump(("lzma", 3)),
               _joblib_load(None), True, compression="lzma-3"),
        Format("cloudpickle", ".cloudpkl", "cloudpickle", _cloudpickle_dump, _cloudpickle_load,
               True),
        Format("skops", ".skops", "skops", _skops_dump, _skops_load, False,
               prepare_fn=_skops_prepare),
        Format("onnx", ".onnx", "skl2onnx+onnxruntime", _onnx_dump, _onnx_load, False,
               needs_python_object=False),
    )
}


PLUGINS_ENV = "PERSISTBENCH_FORMATS"


def register(fmt: Format) -> Format:
    """Add a format of one's own, from a module named in PERSISTBENCH_FORMATS.

    The variable, not a command-line option, because every process that loads a file
    (the forkserver's cells, a freshly started server) must know the format: they inherit
    the environment and import this module, so each registers the same formats.
    """
    if fmt.name in FORMATS:
        raise ValueError(f"format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


def _import_plugins(value: str) -> str:
    """Import the modules named in PERSISTBENCH_FORMATS; the first failure, as one line.

    Kept, not raised: an exception here would surface as an import traceback of every
    module that imports this one; the CLI reports it and exits instead.
    """
    for name in filter(None, (part.strip() for part in value.split(","))):
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure of the user's module is the message
            return (f"{PLUGINS_ENV}={value!r}: cannot import {name!r} ({describe_exception(exc)});"
                    " name importable modules that call persistbench.sources.formats.register, or "
                    "unset it")
    return ""


PLUGIN_ERROR = _import_plugins(os.environ.get(PLUGINS_ENV, ""))


def predict(fmt: Format, obj: Any, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (or values) and probabilities where the model has them, for any format."""
    if not fmt.needs_python_object:
        outputs = obj.run(None, {obj.get_inputs()[0].name: onnx_input(X)})
        labels = np.asarray(outputs[0])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        proba = np.asarray(outputs[1], dtype=np.float64) if len(outputs) > 1 else None
        return labels, proba
    labels = np.asarray(obj.predict(X))
    proba = np.asarray(obj.predict_proba(X)) if hasattr(obj, "predict_proba") else None
    return labels, proba


def predict_only(fmt: Format, obj: Any, X: Any) -> Any:
    """Labels (or values) alone, as a server answers a request: no probabilities.

    Timing a first prediction with `predict_proba` folded in would charge a second pass
    (and for ONNX a second output) to what memory mapping or lazy loading defers.
    """
    if not fmt.needs_python_object:
        return obj.run([obj.get_outputs()[0].name], {obj.get_inputs()[0].name: onnx_input(X)})
    return obj.predict(X)
