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
        if data.endswith(b"\n"):
            return data
        length = len(data)
        while True:
            chunk = self.stream.readline(SKIP_CHUNK)
            self.offset += len(chunk)
            self._check()
            length += len(chunk)
            if not chunk:
                raise StreamError("pickle data was truncated (line without newline)")
            if chunk.endswith(b"\n"):
                return length

    def line(self) -> bytes:
        data = self.stream.readline(MAX_LINE + 1)
        self.offset += len(data)
        self._check()
        if not data.endswith(b"\n"):
            if len(data) > MAX_LINE:
                raise StreamError(f"line argument longer than {MAX_LINE} bytes")
            raise StreamError("pickle data was truncated (line without newline)")
        return data


def _decode(name: str, data: bytes) -> Any:
    if name.startswith("unicodestring"):
        return data.decode("utf-8", "surrogatepass")
    if name.startswith("string"):
        return data.decode("ascii")  # the unpickler's default encoding for Python 2 str
    if name.startswith("long"):
        return int.from_bytes(data, "little", signed=True)
    return data


def _argument(op: pickletools.OpcodeInfo, src: Source, c_unpickler: bool) -> Any:
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
        return f"{module.decode('utf-8')} {name.decode('utf-8')}"
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


def read_opcodes(src: Source, c_unpickler: bool = True) -> Iterator[tuple[str, Any, int]]:
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
