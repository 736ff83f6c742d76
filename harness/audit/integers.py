"""INT and LONG arguments read as each unpickler reads them, not as `pickletools` does.

`pickletools` reads them in base 10. CPython's C unpickler (`pickle.load`) reads INT with
C's `strtol(s, &end, 0)`: `010` is 8, `0x10` is 16, a NUL ends the number. When that fails or
overflows, and for LONG, it falls back to `int(s, 0)`, as the pure-Python unpickler that
`joblib.load` uses does throughout. A walk that read `010` as 10 would step over a different
number of array bytes than the loader and read the rest of the stream out of step with it.
"""

from __future__ import annotations

import re

_SPACE = b" \t\n\v\f\r"
_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(?:(0[xX])([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _strtol(line: bytes) -> int | None:
    """C's strtol in base 0 on a NUL-terminated line; None where the C unpickler falls back."""
    text = line.split(b"\0", 1)[0]
    match = _STRTOL.match(text)
    if match is None:
        end, value = 0, 0  # no digits: strtol leaves `end` at the start
    else:
        sign, hex_prefix, hex_digits, octal, decimal = match.groups()
        if hex_prefix:
            value = int(hex_digits, 16)
        elif octal is not None:
            value = int(octal, 8)
        else:
            value = int(decimal)
        value = -value if sign == b"-" else value
        end = match.end()
        if not _LONG_MIN <= value <= _LONG_MAX:
            return None  # ERANGE
    rest = text[end:]
    return value if rest in (b"", b"\n") or (end == len(text)) else None


def _python_int(text: bytes) -> int:
    try:
        return int(text, 0)
    except ValueError as exc:
        raise ValueError(f"could not convert string to int: {text[:40]!r}") from exc


def read_int(line: bytes, c_unpickler: bool) -> int | bool:
    """The value INT pushes; `line` ends with its newline. Raises ValueError as the loader."""
    if len(line) < 2:
        raise ValueError("pickle data was truncated")  # the C unpickler's bad_readline
    if c_unpickler:
        value = _strtol(line)
        if value is None:
            return _python_int(line.split(b"\0", 1)[0])
        return bool(value) if len(line) == 3 and value in (0, 1) else value
    if line == b"00\n":
        return False
    if line == b"01\n":
        return True
    return _python_int(line)


def read_long(line: bytes, c_unpickler: bool) -> int:
    """The value LONG pushes: a trailing `L` dropped, then `int(s, 0)`."""
    if len(line) < 2:
        raise ValueError("pickle data was truncated")
    text = line[:-1]
    if text.endswith(b"L"):
        text = text[:-1]
    if c_unpickler:
        text = text.split(b"\0", 1)[0]
    return _python_int(text)
