"""Child processes: the forkserver every child forks from, and one function run in a child
whose ending (a result, an exception, a timeout, a signal) is classified, never raised.

The runner runs cells' steps this way; experiments reach it through their step context
(`StepContext.run_child`); commands that load a file the harness did not write use it too.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
from pathlib import Path

from persistbench.measure.methods import active, start_method

_context: multiprocessing.context.BaseContext | None = None
_environment: dict[str, str] = {}  # the harness's environment when the forkserver started


def context():
    """The forkserver, started once per harness process, and again if the harness's
    environment changed since (a notebook that set PERSISTBENCH_CACHE between two runs):
    the harness finds a cached model where its children will look for it.

    Children inherit the user's environment unchanged: allocator settings change timings and
    memory (glibc's MALLOC_* thresholds slowed skops loads by half), so a cell runs under the
    allocator a user's process gets; `run.allocator` records any tuning the user exported.
    """
    global _context
    if _context is not None and _context.get_start_method() == "forkserver" \
            and dict(os.environ) != _environment:
        fresh_forkserver()
    if _context is None:
        if (start_method(active()) == "forkserver"
                and "forkserver" in multiprocessing.get_all_start_methods()):
            _context = multiprocessing.get_context("forkserver")
            # The worker first, then the libraries, whose last act is to freeze the collector.
            _context.set_forkserver_preload(["persistbench.schedule.worker",
                                             "persistbench.schedule.preload"])
            _start_forkserver_deaf_to_ctrl_c()
        else:  # macOS, where forking after Apple's frameworks load is unsafe
            _context = multiprocessing.get_context("spawn")
    return _context

def _start_forkserver_deaf_to_ctrl_c() -> None:
    """Start the forkserver now with SIGINT blocked, which it and its children inherit.

    multiprocessing ignores SIGINT in its forkserver only once the preload is imported, so
    a Ctrl-C in the first seconds printed the forkserver's own traceback beside the
    harness's one-line message; children would print theirs too. Ctrl-C belongs to the
    harness's process, which kills the children (`_kill_tree`) and keeps what was measured.

    Blocked, never ignored: a signal mask survives fork and exec, and a Ctrl-C arriving
    meanwhile still reaches the harness, either through another thread (BLAS starts its
    workers on import) or once the mask is restored. Ignoring SIGINT for the window lost
    such a Ctrl-C and the run went on to exit 0. The resource tracker starts first because
    its own start unblocks SIGINT in this thread.
    """
    from multiprocessing import forkserver, resource_tracker

    _environment.clear()
    _environment.update(os.environ)
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

def fresh_forkserver() -> None:
    """Replace the forkserver before a new pass, so each pass forks from a parent of its own.

    Forks share their parent's memory layout, hash seed and address space; parents visited
    in turn differed by sd 0.03 in log beyond what their forks' scatter explains (forks
    timing a forest's unpickling). Small beside the machine's own swings, but with one
    forkserver per run it is shared by every pass of a run and hidden from the spread a
    comparison sees; with one per pass it shows, and averages over as many parents as
    passes.
    """
    from multiprocessing import forkserver

    if _context is None:
        context()  # the first one: fresh already
        return
    if _context.get_start_method() != "forkserver":
        return  # spawn: every child is a new interpreter already
    forkserver._forkserver._stop()  # private, but the only way to replace it
    _start_forkserver_deaf_to_ctrl_c()

def _ready(result_path: str) -> None:
    Path(result_path).write_text("{}")


def forkserver_ready() -> None:
    """Wait until the forkserver has imported its preload (a child that does nothing), so
    nothing timed in the harness's process runs beside those imports."""
    import tempfile

    if context().get_start_method() != "forkserver":
        return  # spawn: nothing preloads
    with tempfile.TemporaryDirectory(prefix="persistbench-ready-") as folder:
        run_child(_ready, (), Path(folder) / "ready.json", 600.0)


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()

def run_child(target, args: tuple, result_path: Path, timeout_s: float) -> dict:
    """Run target(*args, result_path) in a child; classify how it ended."""
    proc = context().Process(target=target, args=(*args, str(result_path)), daemon=False)
    proc.start()
    try:
        proc.join(timeout_s)
        if proc.is_alive():
            _kill_tree(proc.pid)
            proc.join()
            return {"status": "timeout", "reason": f"no result after {timeout_s:g} s; killed"}
    except BaseException:
        _kill_tree(proc.pid)
        proc.join()
        raise
    outcome = read_outcome(result_path)
    if proc.exitcode and proc.exitcode < 0:
        name = signal.Signals(-proc.exitcode).name
        hint = " (killed: out of memory or by the user?)" if name == "SIGKILL" else ""
        return {"status": "crashed", "reason": f"process died of {name}{hint}",
                "signal": name}
    if outcome is None:
        return {"status": "crashed", "reason": f"process exited with status {proc.exitcode} "
                                               "without a result"}
    return outcome


def read_outcome(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
