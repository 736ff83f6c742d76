"""The bytes joblib reads after a `NumpyArrayWrapper`, sized exactly as joblib sizes them.

`NumpyArrayWrapper.read_array` (and `read_mmap`) read `prod(shape) * dtype.itemsize` bytes
from the file (after one padding-length byte when the state names an alignment), or a
nested pickle when the dtype holds objects. The dtype is rebuilt with numpy's own
constructors and compared with what numpy writes for it: a state whose item size or object
flag numpy would ignore, or a shape that is not a tuple of Python ints, is a wrapper the
walk cannot size; the loader may still read it, so that is a finding (`Unfollowable`),
never the quiet end of a reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from persistbench.audit.opcodes import Unfollowable
from persistbench.audit.symbols import Built, SymDict

NUMPY_DTYPE = ("numpy", "dtype")
WRAPPER_KEYS = 16  # joblib writes 6 or 7 (subclass, shape, order, dtype, allow_mmap, ...)
MAX_FIELDS = 4096  # fields of a structured dtype: far beyond any model's arrays


@dataclass(frozen=True)
class Layout:
    """What follows the wrapper in the file."""

    objects: bool  # a nested pickle
    aligned: bool  # a padding-length byte, then that many bytes, come first
    nbytes: int


def array_layout(wrapper: Built) -> Layout:
    """The layout joblib reads after `wrapper`; raises `Unfollowable` when it cannot be
    known without loading."""
    state = wrapper.state
    if not isinstance(state, SymDict) or len(state.pairs) > WRAPPER_KEYS or state.duplicated():
        raise Unfollowable("joblib array wrapper whose state is not one plain dict of the "
                           "keys joblib writes")
    shape = state.get("shape")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise Unfollowable("joblib array wrapper with an unreadable shape")
    dtype = _dtype(state.get("dtype"))
    count = 1
    for n in shape:
        count *= n
    return Layout(bool(dtype.hasobject),
                  state.get("numpy_array_alignment_bytes") is not None,
                  count * dtype.itemsize)


def _dtype(value: Any, depth: int = 0):
    """The dtype numpy rebuilds from a pickled one, if it is exactly what numpy writes:
    rebuilt from its parts with numpy's constructors, never by handing the file's state to
    `dtype.__setstate__` (an inconsistent state crashes numpy)."""
    import numpy as np

    if not (depth < 4 and isinstance(value, Built) and value.of == NUMPY_DTYPE
            and isinstance(value.args, tuple) and len(value.args) == 3
            and isinstance(value.args[0], str) and len(value.args[0]) <= 16
            and isinstance(value.state, tuple) and len(value.state) >= 8):
        raise Unfollowable("joblib array wrapper without a dtype numpy writes")
    state = value.state
    try:
        if state[3] is None:
            dtype = np.dtype(value.args[0])
            if state[1] in ("<", ">") and dtype.byteorder != "|":
                dtype = dtype.newbyteorder(state[1])
            fields = None
        else:
            fields = {}
            if isinstance(state[4], SymDict) and len(state[4].pairs) > MAX_FIELDS:
                raise Unfollowable(f"joblib array dtype with over {MAX_FIELDS} fields")
            for name, entry in (state[4].pairs if isinstance(state[4], SymDict) else ()):
                if not (isinstance(entry, tuple) and len(entry) == 2
                        and type(entry[1]) is int):
                    raise Unfollowable("joblib array dtype with a field numpy does not write")
                fields[name] = (_dtype(entry[0], depth + 1), entry[1])
            names = list(state[3])
            dtype = np.dtype({"names": names, "formats": [fields[n][0] for n in names],
                              "offsets": [fields[n][1] for n in names],
                              "itemsize": state[5]}, align=bool(state[7] & 0x80))
    except (TypeError, ValueError, KeyError) as exc:
        raise Unfollowable(f"joblib array wrapper with dtype {value.args[0]!r}") from exc
    _, args, expected = dtype.__reduce__()
    # all but the fields (compared above) and datetime metadata (no effect on item size)
    same = (args == value.args and len(expected) == len(state)
            and expected[:4] == state[:4] and expected[5:8] == state[5:8])
    if not same or (fields is not None and set(expected[4]) != set(fields)):
        raise Unfollowable(f"joblib array dtype {value.args[0]!r} with a state numpy does not "
                          "write (item size or object flag changed)")
    return dtype


