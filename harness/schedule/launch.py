"""Starting the load stage's confined child: a fresh interpreter running
`schedule/loadchild.py`, now or ahead of the static walk.

Kept apart from `detonate.py` (which judges what the load did, with the audit's
allow-list) so that the command starting a child ahead imports nothing heavy first: each
module imported before the start is time the child's own imports could have overlapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CPU_S = 15
BASE_MEMORY = 1 << 30  # the interpreter, numpy and scikit-learn map about 600 MB
FORK_ROOM = 512 << 20  # what a forked load may map beyond its parent, before the file's share


def memory_cap(path: Path, fork: bool = False) -> int:
    """Room for the libraries and a few times the file: more than a benign load needs,
    little enough that a bomb stops at about 1 GiB for a small file. A forked child starts
    with this process's address space, its libraries already mapped: the room is added."""
    size = Path(path).stat().st_size
    if fork:
        import psutil

        base = psutil.Process().memory_info().vms + FORK_ROOM
    else:
        base = BASE_MEMORY
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(base + 4 * size, base + int(0.8 * total))


def child_env(scratch: Path) -> dict[str, str]:
    """One-thread pools, temporary files in the scratch folder, a home of nothing."""
    return {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TMPDIR": str(scratch),
            # a home nothing can be created in: onnxruntime makes ~/.cache/Microsoft at every
            # session, which is the runtime, not the file, and would read as a file left behind
            "HOME": os.devnull}


@dataclass
class Ahead:
    """A fresh load child started before the static walk ends (`start_ahead`): importing
    the libraries a load needs while the walk runs, waiting for the loaders."""

    proc: subprocess.Popen
    read_fd: int  # its events
    go_fd: int  # one line naming the loaders; closed without it, the load is cancelled
    scratch: Path


def start_ahead(path: Path, trusted: tuple[str, ...] = ()) -> Ahead:
    """Start the confined load child of `path` now, so that its interpreter's start and
    imports overlap the static walk; `run_load_stage(ahead=...)` lets it load, `cancel`
    ends it. It confines itself only once told to load, and reads the file only then."""
    scratch = Path(tempfile.mkdtemp(prefix="persistbench-load-"))
    request = {"path": str(Path(path).resolve()), "scratch": str(scratch),
               "memory_bytes": memory_cap(path), "cpu_s": CPU_S, "trusted": list(trusted)}
    go_read, go_write = os.pipe()
    try:
        proc, read_fd = start_child({**request, "await_go": True, "go_fd": go_read},
                                    child_env(scratch), (go_read,))
    except BaseException:
        os.close(go_write)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        os.close(go_read)
    return Ahead(proc, read_fd, go_write, scratch)


def cancel(ahead: Ahead) -> None:
    """End a child started ahead that will not load: it never opened the file."""
    os.close(ahead.go_fd)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(ahead.proc.pid, signal.SIGKILL)
    ahead.proc.communicate()
    os.close(ahead.read_fd)
    shutil.rmtree(ahead.scratch, ignore_errors=True)


def start_child(request: dict, env: dict,
                keep: tuple[int, ...] = ()) -> tuple[subprocess.Popen, int]:
    """A fresh interpreter running `loadchild`; (it, the read end of its event pipe)."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-m", "persistbench.schedule.loadchild",
             json.dumps({**request, "fd": write_fd})], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_fd, *keep),
            cwd=request["scratch"], env={**os.environ, **env}, start_new_session=True)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd
