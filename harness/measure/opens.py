"""Whether an `open` audit event (PEP 578: path, mode, flags) asks to write.

Both watchers of a load (the security experiment's recorder and the audit's confined load
child) report only opens that can change a file; one reading of the event keeps them from
disagreeing about what counts. Imports `os` only: the load child must start fast.
"""

from __future__ import annotations

import os

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def opens_for_writing(args: tuple) -> bool:
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)
