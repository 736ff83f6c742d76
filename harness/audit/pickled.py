"""The two ways a pickle-based model file is loaded: `pickle.load` and `joblib.load`.

Each reading follows the bytes exactly as its loader would: `pickle.load` from the first
byte, with joblib's array bytes taken as opcodes; `joblib.load` after joblib's own
compression detection and decompressor (`joblib.compressor`), stepping over array bytes.
Whatever either loader would do is audited; data after the end and two loaders seeing
different objects are findings of their own.
"""

from __future__ import annotations

import io
import lzma
import zlib
from dataclasses import dataclass
from pathlib import Path

from persistbench.audit.budget import Budget, BudgetExceeded
from persistbench.audit.opcodes import OPCODE_BYTES, Source, StreamError, Unfollowable
from persistbench.audit.policy import Finding
from persistbench.audit.walker import PickleWalk, walk_stream

STREAM_ERRORS = (StreamError, EOFError, OSError, lzma.LZMAError, zlib.error, RuntimeError,
                 ValueError)


@dataclass
class Reading:
    """One loader's reading of the file."""

    walk: PickleWalk
    compression: str | None
    complete: bool = False
    error: str | None = None

    @property
    def loader(self) -> str:
        return self.walk.loader


def _follow(src: Source, walk: PickleWalk, compression: str | None) -> Reading:
    reading = Reading(walk, compression)
    try:
        walk_stream(src, walk)
        reading.complete = True
        end = src.offset
        if src.read(1):
            walk.flag("trailing-data", f"data after byte {end}", "the file goes on after the "
                      "pickle's end: a second stream, or another format read by another "
                      "loader", end)
    except BudgetExceeded as exc:
        walk.flag("budget", str(exc), "the audit stops here; a loader would go on", src.offset)
    except Unfollowable as exc:
        walk.flag("unfollowable", str(exc), "the walk cannot follow the stream past this "
                  "point, and the loader may go on: what comes after is unseen", src.offset)
        reading.error = f"{walk.loader} cannot be followed past byte {src.offset}: {exc}"
    except STREAM_ERRORS as exc:
        reading.error = f"{walk.loader} stops at byte {src.offset}: {exc}"
    return reading


def read_pickle(path: Path, head: bytes, trusted: tuple[str, ...], budget: Budget
                ) -> Reading | None:
    """`pickle.load(f)` on the raw file, or None if its first byte is no opcode."""
    if head[0] not in OPCODE_BYTES:
        return None
    with open(path, "rb") as raw:
        walk = PickleWalk("pickle.load", joblib=False, trusted=trusted, budget=budget)
        return _follow(Source(raw, True, budget.decompressed_bytes), walk, None)


def read_joblib(path: Path, head: bytes, trusted: tuple[str, ...], budget: Budget
                ) -> Reading | None:
    """`joblib.load(path)`: joblib's compression detection, then its unpickler."""
    from joblib.compressor import _COMPRESSORS
    from joblib.numpy_pickle_utils import _detect_compressor

    walk = PickleWalk("joblib.load", joblib=True, trusted=trusted, budget=budget)
    with open(path, "rb") as raw:
        name = _detect_compressor(raw)
        if name == "compat":
            walk.flag("legacy-container", "joblib < 0.10 container", "read by joblib's "
                      "compatibility loader, which the audit does not model", 0)
            return Reading(walk, "compat")
        if name not in _COMPRESSORS:
            if head[0] not in OPCODE_BYTES:
                return None
            return _follow(Source(raw, True, budget.decompressed_bytes), walk, None)
        try:
            stream = io.BufferedReader(_COMPRESSORS[name].decompressor_file(raw), 1 << 16)
        except (ValueError, OSError) as exc:
            return Reading(walk, name, error=f"joblib.load cannot decompress ({name}): {exc}")
        return _follow(Source(stream, False, budget.decompressed_bytes), walk, name)


def disagreement(plain: Reading | None, joblib: Reading | None) -> Finding | None:
    """Both loaders read a whole pickle, but not the same one."""
    if not (plain and joblib and plain.complete and joblib.complete):
        return None
    if joblib.compression or joblib.walk.joblib_arrays:
        return Finding("polyglot", "pickle.load and joblib.load",
                       "both loaders read a complete pickle from this file, but different "
                       "ones", 0)
    return None
