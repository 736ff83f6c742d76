"""The audit's stages in children forked from a preloaded process, confined after the fork.

A fresh interpreter for each stage spends most of an audit importing: Python itself, numpy
and joblib for the static walk, then scikit-learn (1.5-2 s here) again for the load. When
the process that audits has imported those libraries already (trusted code, imported before
any file is read), a stage is a `fork()` of it instead: the child closes every descriptor
it inherited but its output pipe and stderr file, then confines itself exactly as the fresh
interpreter does (`schedule/confine.py`) before it reads the file. Nothing of the file ever
reaches the parent but the bytes written to the pipe.

Forking is used only from a single-threaded parent (a thread holding a lock at fork time
would leave the child stuck), with numpy's thread pools kept to one thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_OUTPUT = 64 << 20  # what a stage may write to its pipe; the rest is dropped
PRELOAD = ("numpy", "joblib", "psutil", "sklearn.base", "sklearn.utils")
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Ended:
    """How a forked stage ended."""

    output: bytes
    returncode: int | None  # as subprocess gives it: negative for a signal
    timed_out: bool
    stderr: str


def preload(names: tuple[str, ...] = PRELOAD) -> None:
    """Import the stages' libraries here, once, with one-thread pools (set before numpy
    starts them), so that each stage can be a fork."""
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, "1")
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # an optional library: the stage imports it, or reports it missing


def single_threaded() -> bool:
    """Whether this process may fork a stage at all: POSIX and one thread."""
    return hasattr(os, "fork") and threading.active_count() == 1


def can_fork() -> bool:
    """Whether stages may be forked from this process: one thread, libraries in."""
    return single_threaded() and all(name in sys.modules
                                     for name in ("numpy", "joblib", "sklearn"))


def _child(target: Callable[..., None], args: tuple, write_fd: int, err_fd: int) -> None:
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err_fd, 2)
        # nothing the parent had open stays reachable: Landlock does not cover open files
        keep = sorted({0, 1, 2, write_fd})
        low = 3
        for fd in keep[3:]:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        tempfile.tempdir = None  # TMPDIR may be set by the target
        target(write_fd, *args)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(70)


def run_forked(target: Callable[..., None], args: tuple, wall_s: float) -> Ended:
    """Fork, run `target(write_fd, *args)` in the child (it must end with `os._exit`),
    collect what it writes until it closes the pipe or `wall_s` passes."""
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(target, args, write_fd, err.fileno())
        os.close(write_fd)
        deadline = time.monotonic() + wall_s
        chunks, size, timed_out = [], 0, False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select([read_fd], [], [], min(left, 0.5))
                if not ready:
                    continue
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                if size < MAX_OUTPUT:
                    chunks.append(chunk)
                    size += len(chunk)
        finally:
            os.close(read_fd)
            status, killed = _reap(pid, deadline if not timed_out else 0.0)
        err.seek(0)
        stderr = err.read(1 << 16).decode("utf-8", "backslashreplace")
    return Ended(b"".join(chunks), os.waitstatus_to_exitcode(status), timed_out or killed,
                 stderr)


def _reap(pid: int, deadline: float) -> tuple[int, bool]:
    """(the child's wait status, whether it had to be killed): killed once the deadline
    passes (a payload may close its pipe and go on running)."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1], True
