"""Inside the confined child of the audit's load stage: load one file, tell what it tried.

Run as `python -I -B -m persistbench.schedule.loadchild REQUEST` by `schedule/detonate.py`,
a fresh interpreter (not a fork of the forkserver: nothing of the harness's memory, no
inherited descriptor but the event pipe). It imports the loader's library, confines itself
(`schedule/confine.py`), installs a Python audit hook, then loads the file with its real
loader. Every event is written to the pipe the moment it happens, before the operation it
announces reaches the kernel: a payload that is then killed by seccomp, or that later
tampers with the hook, cannot take back what was already sent.
"""

from __future__ import annotations

import json
import os
import sys

from persistbench.measure.opens import opens_for_writing

# Audit events that are attempts to act beyond loading (prefixes).
ATTEMPTS = ("os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
            "pty.spawn", "subprocess.Popen", "socket.", "os.remove", "os.rename", "os.rmdir",
            "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate",
            "os.kill", "os.killpg", "shutil.", "ctypes.dlopen",
            "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "sys.addaudithook",
            "sys.settrace", "sys.setprofile", "webbrowser.open", "urllib.Request",
            "http.client.", "ftplib.", "smtplib.", "telnetlib.", "imaplib.", "poplib.",
            "os.startfile", "builtins.breakpoint", "code.__new__", "function.__new__")
TEXT_LIMIT = 300
# Imported ahead of the load by a child started before the static walk ends: what a fitted
# scikit-learn estimator's load imports first (most of its import time)
AHEAD = ("numpy", "joblib", "sklearn.base")


class Pipe:
    """The event pipe: one JSON object per line, written unbuffered."""

    def __init__(self, fd: int):
        self.fd = fd
        self.live = True

    def send(self, **event) -> None:
        if self.live:
            line = json.dumps(event, default=repr, ensure_ascii=True) + "\n"
            os.write(self.fd, line.encode())


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    text = value if isinstance(value, str) else repr(value)
    return text[:TEXT_LIMIT]



def make_hook(pipe: Pipe, cloudpickle_ok: bool):
    """The audit hook; `cloudpickle_ok`: functions shipped as code are the format's nature
    (their creation is reported by the static stage), not an attempt."""

    def hook(event: str, args: tuple) -> None:
        if event == "pickle.find_class":
            pipe.send(resolved=f"{_text(args[0])}:{_text(args[1])}")
        elif event == "open":
            if opens_for_writing(args) and args[0] != "/dev/null":
                pipe.send(attempt="open for writing", detail=_text(args[0]))
        elif event.startswith(ATTEMPTS):
            if cloudpickle_ok and event in ("code.__new__", "function.__new__"):
                return
            pipe.send(attempt=event, detail=", ".join(_text(a) for a in args[:3]))

    return hook


def _import_loader(loader: str) -> None:
    """The loader's library before confinement: trusted code, and joblib probes /dev/shm."""
    if loader.startswith("joblib"):
        import joblib  # noqa: F401
    elif loader.startswith("skops"):
        import skops.io  # noqa: F401
    elif loader == "onnxruntime":
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401


def _read_in_place() -> None:
    """The pure-Python unpickler that `joblib.load` runs fills a BYTEARRAY8 with
    `buf[:] = file.read(n)`: the bytes twice in memory (a 600 MB array took 1.9 GiB). Here
    the file's `readinto` fills the buffer instead: the same bytes, in the same order, and a
    file that ends first leaves the buffer as short as the original does."""
    import pickle

    def fill(file_read, buf) -> None:
        readinto = getattr(getattr(file_read, "__self__", None), "readinto", None)
        if readinto is None or not isinstance(buf, bytearray):
            buf[:] = file_read(len(buf))
            return
        got = 0
        with memoryview(buf) as view:
            while got < len(buf):
                n = readinto(view[got:])
                if not n:
                    break
                got += n
        del buf[got:]

    def readinto(self, buf):  # pickle._Unframer.readinto, with `fill` for its copy
        if self.current_frame:
            n = self.current_frame.readinto(buf)
            if n == 0 and len(buf) != 0:
                self.current_frame = None
                n = len(buf)
                fill(self.file_read, buf)
                return n
            if n < len(buf):
                raise pickle.UnpicklingError("pickle exhausted before end of frame")
            return n
        n = len(buf)
        fill(self.file_read, buf)
        return n

    pickle._Unframer.readinto = readinto


def _import_trusted(names: list[str]) -> None:
    """The user's `--trust` packages, before confinement: trusted code (LightGBM and XGBoost
    load their native library with ctypes when imported)."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # a prefix that is no importable module: the load will say
            continue


def load(loader: str, path: str):
    if loader == "pickle.load":
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)
    if loader == "joblib.load":
        import joblib

        _read_in_place()
        return joblib.load(path, mmap_mode="r")
    if loader == "skops.io.load":
        import skops.io as sio

        return sio.load(path, trusted=sio.get_untrusted_types(file=path))
    if loader == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    raise ValueError(f"unknown loader {loader}")


def _peak_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _await_go(request: dict) -> dict | None:
    """Started before the static walk has ended: import what nearly every model's load
    needs while the walk runs on the other core (trusted code, before the file is read),
    then wait for the parent's one line naming the loaders on the `go_fd` pipe; the pipe's
    end without one cancels the load, the file never opened."""
    import importlib

    for name in AHEAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # an optional library: the load imports it, or reports it missing
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(request["go_fd"], 1 << 12)
        if not chunk:
            break
        line += chunk
    os.close(request["go_fd"])
    return {**request, **json.loads(line)} if line.endswith(b"\n") else None


def main(request: dict) -> None:
    import time

    from persistbench.schedule.confine import Limits, Unconfinable, confine

    pipe = Pipe(request["fd"])
    if request.get("await_go"):
        request = _await_go(request)
        if request is None:
            os._exit(0)
    for loader in request["loaders"]:
        _import_loader(loader)
    _import_trusted(request.get("trusted", []))
    os.chdir(request["scratch"])
    try:
        applied = confine(Limits(writable=(request["scratch"],),
                                 memory_bytes=request["memory_bytes"], cpu_s=request["cpu_s"]))
    except Unconfinable as exc:
        pipe.send(unconfinable=str(exc))
        os._exit(3)
    pipe.send(confined=applied)
    sys.addaudithook(make_hook(pipe, request["cloudpickle"]))
    for loader in request["loaders"]:
        started = time.perf_counter()
        try:
            obj = load(loader, request["path"])
            outcome = {"outcome": "loaded", "type": f"{type(obj).__module__}."
                                                    f"{type(obj).__qualname__}"}
            del obj
        except MemoryError:
            outcome = {"outcome": "memory", "message": "MemoryError"}
        except RecursionError as exc:
            outcome = {"outcome": "error", "message": f"RecursionError: {_text(exc)}"}
        except BaseException as exc:  # a payload may raise anything, SystemExit included
            kind = "blocked" if isinstance(exc, PermissionError) else "error"
            outcome = {"outcome": kind, "message": f"{type(exc).__name__}: {_text(exc)}"}
        pipe.send(loader=loader, seconds=time.perf_counter() - started, **outcome)
    pipe.send(done=True, peak_bytes=_peak_bytes())
    os._exit(0)  # no atexit handler a payload may have registered


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
