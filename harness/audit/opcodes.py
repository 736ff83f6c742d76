"""Pickle opcodes read from a stream the way the C unpickler reads them, with bounded memory.

`pickletools.genops` reads every argument into memory (a 600 MB array is a 600 MB bytes
object) and reads a newline-terminated argument to the end of the file if the newline never
comes. Here byte arguments above `INLINE_LIMIT` are stepped over (seek, or read in chunks on
a decompressed stream) and stand as a `Large` placeholder; lines are capped.
"""

from __future__ import annotations

import io
import pickletools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from persistbench.audit.budget import BudgetExceeded
from persistbench.audit.integers import read_int, read_long

INLINE_LIMIT = 4096  # longer byte/string arguments are skipped, not kept
MAX_LINE = 1 << 16
SKIP_CHUNK = 1 << 20
OPCODES = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
OPCODE_BYTES = frozenset(OPCODES)
_LENGTH = {-2: ("<B", 1), -3: ("<i", 4), -4: ("<I", 4), -5: ("<Q", 8)}


class StreamError(Exception):
    """The stream cannot be followed any further; the real unpickler stops here too."""


class Unfollowable(StreamError):
    """The walk cannot follow the stream here, but the loader may go on: a finding, never
    the quiet end of a reading (an array wrapper whose state joblib accepts and the walk
    cannot size, for instance)."""


@dataclass(frozen=True)
class Large:
    """A byte or string argument too long to keep: only its kind and length are known."""

    kind: str
    length: int

    def __str__(self) -> str:
        return f"<{self.kind} of {self.length} bytes>"


class Source:
    """A binary stream with its offset counted and a bounded `readline`."""

    def __init__(self, stream: BinaryIO, seekable: bool, limit: int):
        self.stream = stream
        self.seekable = seekable
        self.offset = 0
        self.limit = limit  # bytes of (decompressed) stream the audit reads at most

    def read(self, size: int) -> bytes:
        data = self.stream.read(size)
        self.offset += len(data)
        self._check()
        return data

    def _check(self) -> None:
        if self.offset > self.limit:
            raise BudgetExceeded(f"too large to audit within {self.limit:,} decompressed "
                                 "bytes")

    def exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise StreamError("pickle data was truncated (file ends inside an argument)")
        return data

    def skip(self, size: int) -> None:
        """Step over `size` bytes; a file that ends first is truncated."""
        if self.seekable:
            end = self.stream.seek(0, io.SEEK_END)
            if self.offset + size > end:
                raise StreamError("pickle data was truncated (file ends inside an argument)")
            self.stream.seek(self.offset + size)
            self.offset += size
            return
        while size > 0:
            chunk = self.read(min(size, SKIP_CHUNK))
            if not chunk:
                raise StreamError("pickle data was truncated (file ends inside an argument)")
            size -= len(chunk)

    def long_line(self) -> bytes | int:
        """A line, or the length of one too long to keep (stepped over to its newline)."""
        data = self.stream.readline(MAX_LINE + 1)
        self.offset += len(data)
        self._check()
        if data.endswith(b"\n") or len(data) <= MAX_LINE:
            return data  # a whole line, or the file's last one (see `line`)
        length = len(data)
        while True:
            chunk = self.stream.readline(SKIP_CHUNK)
            self.offset += len(chunk)
            self._check()
            length += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                return length

    def line(self) -> bytes:
        data = self.stream.readline(MAX_LINE + 1)
        self.offset += len(data)
        self._check()
        if len(data) > MAX_LINE and not data.endswith(b"\n"):
            raise StreamError(f"line argument longer than {MAX_LINE} bytes")
        # A last line without its newline is still read by both unpicklers (its last byte
        # stands for the newline): `c<module>\n<name>` at the end of the file resolves.
        return data


FRAME_LIMIT = 64 << 20  # picklers write frames of about 64 KiB; a loader reads any size


class Framed:
    """The pure-Python unpickler's view of a stream (`pickle._Unframer`, what `joblib.load`
    reads opcodes through): after FRAME, opcodes and their arguments come from the frame,
    and an argument may not run past its end; once the frame is used up, from the file.
    joblib reads array bytes from the file itself (`Source`), which after a FRAME is
    further on than the opcodes: a reader that ignores frames reads those bytes out of
    step with the loader."""

    def __init__(self, src: Source):
        self.src = src
        self.frame: bytes | None = None
        self.at = 0  # position in the frame
        self.start = 0  # file offset of the frame's first byte

    @property
    def offset(self) -> int:
        return self.start + self.at if self.frame is not None else self.src.offset

    def load_frame(self, size: int) -> None:
        if self.frame is not None and self.at < len(self.frame):
            raise StreamError("beginning of a new frame before end of current frame")
        if size > FRAME_LIMIT:
            raise Unfollowable(f"FRAME of {size:,} bytes: larger than any pickler writes")
        self.start = self.src.offset
        self.frame, self.at = self.src.read(size), 0  # a short read makes a short frame

    def _take(self, size: int) -> bytes | None:
        """`size` bytes of the frame; None once it is used up (reads go to the file)."""
        if self.frame is None:
            return None
        data = self.frame[self.at:self.at + size]
        if not data and size:
            self.frame = None
            return None
        if len(data) < size:
            raise StreamError("pickle exhausted before end of frame")
        self.at += size
        return data

    def read(self, size: int) -> bytes:
        data = self._take(size)
        return self.src.read(size) if data is None else data

    def exact(self, size: int) -> bytes:
        data = self._take(size)
        return self.src.exact(size) if data is None else data

    def skip(self, size: int) -> None:
        if self.frame is not None and size > len(self.frame) - self.at and \
                self.at < len(self.frame):
            raise StreamError("pickle exhausted before end of frame")
        if self._take(size) is None:
            self.src.skip(size)

    def _frame_line(self) -> bytes | None:
        if self.frame is None:
            return None
        end = self.frame.find(b"\n", self.at)
        if self.at >= len(self.frame):
            self.frame = None
            return None
        if end < 0:
            raise StreamError("pickle exhausted before end of frame")
        data, self.at = self.frame[self.at:end + 1], end + 1
        return data

    def line(self) -> bytes:
        data = self._frame_line()
        if data is None:
            return self.src.line()
        if len(data) > MAX_LINE:
            raise StreamError(f"line argument longer than {MAX_LINE} bytes")
        return data

    def long_line(self) -> bytes | int:
        data = self._frame_line()
        if data is None:
            return self.src.long_line()
        return data if len(data) <= MAX_LINE else len(data)


def _decode(name: str, data: bytes) -> Any:
    if name.startswith("unicodestring"):
        return data.decode("utf-8", "surrogatepass")
    if name.startswith("string"):
        return data.decode("ascii")  # the unpickler's default encoding for Python 2 str
    if name.startswith("long"):
        return int.from_bytes(data, "little", signed=True)
    return data


def _argument(op: pickletools.OpcodeInfo, src: Source | Framed, c_unpickler: bool) -> Any:
    desc = op.arg
    if desc is None:
        return None
    if desc.n >= 0:
        return desc.reader(io.BytesIO(src.exact(desc.n)))
    if desc.n == pickletools.UP_TO_NEWLINE and desc.name in ("unicodestringnl", "stringnl"):
        data = src.long_line()
        if isinstance(data, int):
            return Large(desc.name, data)
        return desc.reader(io.BytesIO(data))
    if desc.name == "decimalnl_short":  # INT
        return read_int(src.line(), c_unpickler)
    if desc.name == "decimalnl_long":  # LONG
        return read_long(src.line(), c_unpickler)
    if desc.name == "stringnl_noescape_pair":  # GLOBAL, INST: both unpicklers decode UTF-8
        module, name = src.line()[:-1], src.line()[:-1]
        return module.decode("utf-8"), name.decode("utf-8")  # a pair: either may hold a space
    if desc.n == pickletools.UP_TO_NEWLINE:
        return desc.reader(io.BytesIO(src.line()))
    fmt, width = _LENGTH[desc.n]
    (length,) = struct.unpack(fmt, src.exact(width))
    if length < 0:
        raise StreamError(f"{op.name} with a negative length")
    if length > INLINE_LIMIT:
        src.skip(length)
        return Large(desc.name, length)
    try:
        return _decode(desc.name, src.exact(length))
    except UnicodeDecodeError as exc:
        raise StreamError(f"{op.name}: {exc}") from exc


_FIXED = {"uint1": ("<B", 1), "uint2": ("<H", 2), "int4": ("<i", 4), "uint4": ("<I", 4),
          "uint8": ("<Q", 8), "float8": (">d", 8)}


def _table() -> dict[int, tuple[str, Any]]:
    """code byte -> (name, how to read its argument): None, a struct, or the descriptor."""
    table = {}
    for code, op in OPCODES.items():
        if op.arg is None:
            how: Any = None
        elif op.arg.name in _FIXED:
            fmt, width = _FIXED[op.arg.name]
            how = (struct.Struct(fmt), width)
        else:
            how = op
        table[code] = (op.name, how)
    return table


_TABLE = _table()


def read_opcodes(src: Source | Framed, c_unpickler: bool = True
                 ) -> Iterator[tuple[str, Any, int]]:
    """(opcode name, argument, byte offset) until the stream ends; STOP is yielded, not
    treated specially: the caller decides what comes after it. `c_unpickler`: arguments
    as `pickle.load` reads them, else as the pure-Python unpickler of `joblib.load`."""
    read = src.read
    table = _TABLE
    while True:
        pos = src.offset
        code = read(1)
        if not code:
            raise StreamError("pickle data was truncated (no STOP)")
        entry = table.get(code[0])
        if entry is None:
            raise StreamError(f"invalid load key {code!r} at byte {pos}")
        name, how = entry
        if how is None:
            yield name, None, pos
        elif type(how) is tuple:
            data = read(how[1])
            if len(data) != how[1]:
                raise StreamError("pickle data was truncated (file ends inside an argument)")
            yield name, how[0].unpack(data)[0], pos
        else:
            try:
                arg = _argument(how, src, c_unpickler)
            except (ValueError, struct.error) as exc:
                raise StreamError(f"{name} at byte {pos}: {exc}") from exc
            yield name, arg, pos
