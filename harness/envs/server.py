"""A preloaded server per scikit-learn environment that forks one child per request.

Starting a fresh interpreter and importing scikit-learn, SciPy and the serializers costs about
a second per file; the compat matrix loads hundreds of files. So each environment runs one
server (`python -I`: nothing of the user's environment variables or site directory, and of
persistbench only its source, through `link_dir`) that imports those libraries once, then
forks a child per request. The child runs one function (save with A, load with B) and exits:
a crash, a hang or the warning state of one load dies with its child and cannot touch the
next, exactly as with a fresh interpreter, minus the start-up.

The server half (`serve`) runs inside the environment and imports nothing but the standard
library at module level; the harness half (`running`, `request`) starts, calls and stops it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

# Imported once by every server: what a save or a load would otherwise import per file.
# The caller adds what its formats need (`running(..., preload=)`): skops.io and skl2onnx
# alone take seconds to import. A module an older environment lacks is skipped; the load
# that needs it reports it.
PRELOAD = (
    "numpy", "scipy.sparse", "sklearn", "sklearn.decomposition", "sklearn.ensemble",
    "sklearn.feature_extraction.text", "sklearn.linear_model", "sklearn.neighbors",
    "sklearn.neural_network", "sklearn.pipeline", "sklearn.preprocessing", "sklearn.svm",
    "joblib", "cloudpickle", "persistbench.sources.formats", "persistbench.sources.models",
    "persistbench.experiments.compat",
)
# Called once after the imports: answers every child would otherwise compute again.
WARM_UP = ("persistbench.experiments.compat:library_versions",)
READY_TIMEOUT_S = 600.0
PARENT_CHECK_S = 5.0


# ------------------------------------------------------------------- inside the environment

def _run_child(request: dict) -> int:
    """In the forked child: output to the request's log file, run the function, exit code."""
    import resource

    # A crash ends as a signal, as in a fresh interpreter, without dumping a copy of the
    # preloaded server's memory to disk first.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    try:
        module, _, name = request["function"].partition(":")
        getattr(importlib.import_module(module), name)(request["args"])
        return 0
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _wait(pid: int, conn: socket.socket) -> int | None:
    """The child's exit status as subprocess reports it (negative: killed by that signal);
    None when the caller went away first (its cell timed out): the child is then killed."""
    watch = [conn]
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    if pidfd is not None:
        watch.append(pidfd)
    try:
        while True:
            ready, _, _ = select.select(watch, [], [], 0.01 if pidfd is None else None)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if conn in ready and not conn.recv(1):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _serve_one(listener: socket.socket, conn: socket.socket) -> None:
    request = json.loads(conn.makefile("r").readline())
    pid = os.fork()
    if pid == 0:
        listener.close()
        conn.close()
        os._exit(_run_child(request))
    try:
        code = _wait(pid, conn)  # reaps the child
    except BaseException:  # the server is being stopped: its child goes with it
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if code is not None:
        with contextlib.suppress(OSError):  # the caller may be gone by now
            conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")


def _stop(signum, frame) -> None:
    raise SystemExit(0)


def serve(options: dict) -> None:
    """Entry point inside the environment: preload, listen, say `ready`, fork per request.

    It exits when stopped (SIGTERM) or when the harness that started it is gone."""
    import gc
    import warnings

    signal.signal(signal.SIGTERM, _stop)
    parent = os.getppid()
    with warnings.catch_warnings():  # import-time notices are not what a load said
        warnings.simplefilter("ignore")
        for module in [*PRELOAD, *options.get("preload", ())]:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    for target in WARM_UP:
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(options["socket"])
    listener.listen(4)
    listener.settimeout(PARENT_CHECK_S)
    gc.freeze()  # preloaded objects live forever: forked children do not copy them on gc
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(None)
            try:
                _serve_one(listener, conn)
            except Exception:  # one bad request must not stop the server: its caller sees
                traceback.print_exc()  # the connection close without an answer


# ------------------------------------------------------------------------ in the harness

def command(python: str | list[str], function: str, args: dict) -> list[str]:
    """`python -I` running `persistbench.<module>:<function>(args)` from the linked source tree.

    `python` is an interpreter's path, or the argv prefix that runs one (another CPU's
    python3 behind its loader or emulator, `persistbench.envs.arch.launcher`)."""
    from persistbench.envs.builder import link_dir

    module, _, name = function.partition(":")
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); "
            f"from {module} import {name}; {name}(json.loads(sys.argv[2]))")
    prefix = [python] if isinstance(python, str) else list(python)
    return [*prefix, "-I", "-c", code, str(link_dir()), json.dumps(args)]


def _child_env() -> dict[str, str]:
    """The harness's environment, with its cache directory spelled out: the server must use
    the same model cache, and it may not have the library that finds the default one."""
    from persistbench.sources.models import cache_dir

    return {**os.environ, "PERSISTBENCH_CACHE": str(cache_dir().parent)}


def _await_ready(proc: subprocess.Popen, log: Path) -> str | None:
    """None once the server said `ready`; else why it did not."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            if proc.stdout.readline().strip() == "ready":
                return None
            proc.wait()
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            return (f"the loading server exited with status {proc.returncode}"
                    + (f": {tail[-1][:300]}" if tail else ""))
    proc.kill()
    return f"the loading server was not ready after {READY_TIMEOUT_S:g} s"


@contextlib.contextmanager
def running(envs: list[dict], preload: tuple[str, ...] = ()) -> Iterator[list[dict]]:
    """One server per usable environment for the duration of a matrix, importing `preload`
    besides `PRELOAD`; yields the environments with `server` (its socket) or `server_error`
    added, and their start time."""
    directory = Path(tempfile.mkdtemp(prefix="pb-srv-"))  # short: socket paths are limited
    started: list[tuple[dict, subprocess.Popen | None, Path, float]] = []
    try:
        for index, env in enumerate(envs):
            if not env.get("python"):
                started.append((env, None, directory, 0.0))
                continue
            sock, log = directory / f"{index}.sock", directory / f"{index}.log"
            with open(log, "w") as err:
                proc = subprocess.Popen(
                    command(env["python"], "persistbench.envs.server:serve",
                            {"socket": str(sock), "preload": list(preload)}),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                    env={**_child_env(), **(env.get("launch_env") or {})})
            started.append((env, proc, log, time.monotonic()))
        out = []
        for index, (env, proc, log, t0) in enumerate(started):
            if proc is None:
                out.append(env)
                continue
            problem = _await_ready(proc, log)
            server = {"server_error": problem} if problem else {
                "server": str(directory / f"{index}.sock"),
                "server_start_s": time.monotonic() - t0}
            out.append({**env, **server})
        yield out
    finally:
        for _, proc, _, _ in started:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def request(server: str, function: str, args: dict, workdir: Path,
            timeout_s: float | None = None) -> subprocess.CompletedProcess:
    """Have the server fork a child running `function(args)`; how it ended, with what it
    printed, as `subprocess.run` would report a fresh interpreter. After `timeout_s` the
    connection is closed, which makes the server kill the child, and TimeoutError is raised."""
    log = Path(workdir) / f"{function.rpartition(':')[2]}.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(server)
        conn.sendall(json.dumps({"function": function, "args": args,
                                 "log": str(log)}).encode() + b"\n")
        conn.settimeout(timeout_s)
        try:
            reply = conn.makefile("r").readline()
        except TimeoutError:
            raise TimeoutError(f"{function} ran longer than {timeout_s:g} s and was "
                               "killed") from None
    if not reply:
        raise RuntimeError(f"the loading server {server} stopped while running {function}")
    output = log.read_text(errors="replace") if log.exists() else ""
    return subprocess.CompletedProcess(function, json.loads(reply)["returncode"], "", output)
