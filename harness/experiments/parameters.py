"""A fitted estimator's parameters as comparable fingerprints, one per array or scalar.

Whether a model survived a move to another CPU is two questions: does it predict the same,
and did every stored number arrive unchanged. The second is answered here, inside each
interpreter, by walking the loaded object (its state as pickle sees it) and fingerprinting
every array after normalising what legitimately differs between platforms: byte order
(s390x is big-endian) and integer width (`intp` is 32 bits on i386). Floating-point widths
are kept: a float64 that arrives as float32 has changed. Only fingerprints cross between the
interpreters, so no process ever unpickles the other side's output.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

MAX_DEPTH = 40  # deeper than any estimator's state; guards against self-referencing objects
SCALARS = (str, bytes, int, float, bool, complex, type(None))


def normalise(array: np.ndarray) -> np.ndarray:
    """Little-endian, integers widened to 64 bits, contiguous: the form both sides compare."""
    kind = array.dtype.kind
    if kind == "i":
        return np.ascontiguousarray(array, dtype="<i8")
    if kind == "u":
        return np.ascontiguousarray(array, dtype="<u8")
    if kind in "fcU" or kind in "mM":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def fingerprint(array: np.ndarray) -> str:
    """dtype, shape and a digest of the normalised bytes (object arrays: of their repr)."""
    if array.dtype.kind == "O":
        data = repr(array.tolist()).encode()
        dtype = "object"
    else:
        flat = normalise(array)
        data, dtype = flat.tobytes(), flat.dtype.str
    shape = "x".join(str(n) for n in array.shape)
    return f"{dtype} {shape or 'scalar'} {hashlib.sha256(data).hexdigest()[:20]}"


def _state(obj: Any) -> Any:
    """What pickle would save of an object (its `__getstate__`), else its attributes."""
    getter = getattr(obj, "__getstate__", None)
    if getter is not None:
        try:
            return getter()
        except TypeError:  # a C type that needs arguments, or cannot be pickled
            return None
    return getattr(obj, "__dict__", None)


def _walk(obj: Any, path: str, out: dict[str, str], depth: int, seen: dict[int, Any]) -> None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.names:  # a structured array (a tree's nodes): one entry per field
            for name in obj.dtype.names:
                out[f"{path}.{name}"] = fingerprint(obj[name])
        else:
            out[path] = fingerprint(obj)
        return
    if isinstance(obj, np.generic):
        out[path] = fingerprint(np.asarray(obj))
        return
    if isinstance(obj, SCALARS):
        out[path] = f"{type(obj).__name__} {obj!r}"[:200]
        return
    if depth > MAX_DEPTH or id(obj) in seen or (callable(obj) and not hasattr(obj, "fit")):
        return
    seen[id(obj)] = obj  # kept alive: a freed state dict's id would be reused by the next
    if isinstance(obj, dict):
        for key in sorted(obj, key=repr):
            _walk(obj[key], f"{path}[{key!r}]", out, depth + 1, seen)
    elif isinstance(obj, list | tuple):
        for index, item in enumerate(obj):
            _walk(item, f"{path}[{index}]", out, depth + 1, seen)
    else:
        state = _state(obj)
        if state is not None:
            _walk(state, f"{path}<{type(obj).__name__}>", out, depth + 1, seen)


def fingerprints(obj: Any) -> dict[str, str]:
    """Every array and scalar reachable from a loaded model, by its path in the object."""
    out: dict[str, str] = {}
    _walk(obj, "", out, 0, {})
    return out


def first_difference(home: dict[str, str], other: dict[str, str]) -> str | None:
    """None when both sides hold the same parameters; else the first that differs, named."""
    for path in sorted(home.keys() | other.keys()):
        if home.get(path) != other.get(path):
            return (f"{path or 'object'}: {home.get(path, 'absent')} here, "
                    f"{other.get(path, 'absent')} there")
    return None
