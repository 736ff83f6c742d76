"""A minimal model server in a fresh interpreter, and the parent's handle on it.

The `sharing` and `footprint` experiments need processes that look like real serving
processes: a new interpreter (`sys.executable -m persistbench.experiments.serving`), not a fork of
the harness's forkserver, whose preloaded libraries would be shared with every fork and so
would hide, in PSS and USS, what a server of its own really costs. The server imports only
the modules it is told to, reports, then waits on stdin so the parent can read its memory
while it holds still.

Protocol, one JSON object per line on stdout, one command per line on stdin:
  server: {"event": "ready", "import_s": ...}          after its imports
  parent: "serve"
  server: {"event": "served", "load_s": ..., "first_predict_s": ...,
           "first_predict_proba_s": ...}   predict alone, then labels + probabilities
  parent: closes stdin (or any other line): the server exits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# One BLAS/OpenMP thread: servers run one at a time here, and thread pools cost memory.
FLOOR_SAMPLES = 25
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def save_input(X: Any, path: Path) -> Path:
    """Rows for the server to predict: .npy for arrays, JSON for text, Parquet for a
    DataFrame (keeps column names and dtypes); none of them needs pickle."""
    import numpy as np

    if isinstance(X, list | tuple):
        path = path.with_suffix(".json")
        path.write_text(json.dumps([str(x) for x in X]))
    elif hasattr(X, "to_parquet"):
        path = path.with_suffix(".parquet")
        X.to_parquet(path)
    else:
        path = path.with_suffix(".npy")
        np.save(path, np.asarray(X), allow_pickle=False)
    return path


def modules_of(obj: Any, dumps=pickle.dumps) -> list[str]:
    """The modules an unpickler imports to rebuild `obj`, so a server imports them first.

    Pickled with out-of-band buffers (no array is copied), then walked opcode by opcode
    (the audit's walker): nothing is rebuilt, so no `__setstate__` runs and a big model
    costs a scan of its pickle, not a second copy. `dumps` is the format's own pickler
    (cloudpickle's for code that plain pickle refuses).
    """
    from persistbench.audit.budget import Budget
    from persistbench.audit.opcodes import Source
    from persistbench.audit.walker import PickleWalk, walk_stream

    data = dumps(obj, protocol=5, buffer_callback=lambda buffer: None)
    unbounded = Budget.unbounded()  # the harness's own model, whatever its size
    walk = PickleWalk(budget=unbounded, buffers_held_by_caller=True)
    walk_stream(Source(io.BytesIO(data), seekable=True, limit=len(data)), walk)
    return sorted({module for module, _ in walk.names})


FORMAT_MODULES = {"joblib": ["joblib"], "cloudpickle": ["cloudpickle"], "skops": ["skops.io"]}


def modules_for_loading(fmt_name: str, est: Any) -> list[str]:
    """What a server must import to load `est` saved in this format, and nothing more.

    ONNX needs numpy and onnxruntime only; the others need the estimator's own modules
    (what unpickling it imports) and the format's library.
    """
    from persistbench.sources.formats import FORMATS

    fmt = FORMATS[fmt_name]
    if not fmt.needs_python_object:
        return ["numpy", "onnxruntime"]
    if fmt.library == "cloudpickle":
        import cloudpickle

        return modules_of(est, cloudpickle.dumps) + FORMAT_MODULES["cloudpickle"]
    return modules_of(est) + FORMAT_MODULES.get(fmt.library, [])


def load_input(path: Path) -> Any:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".parquet":  # read before "ready": the baseline server pays for pandas too
        import pandas as pd

        return pd.read_parquet(path)
    import numpy as np

    return np.load(path, allow_pickle=False)


def _say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def first_use(fmt_name: str, model: Path, X: Any) -> tuple[dict, Any]:
    """A process's first load of `model` and first predictions on `X`, each timed alone,
    with the floor (the cost of timing nothing) here; returns them and the loaded model."""
    from persistbench.sources.formats import FORMATS, predict, predict_only

    fmt = FORMATS[fmt_name]
    prepared = fmt.prepare_load(model)  # skops: the type review a user does beforehand
    floor = timer_floor()
    start = time.perf_counter()
    obj = fmt.load(model, prepared)
    loaded = time.perf_counter()
    predict_only(fmt, obj, X)
    predicted = time.perf_counter()
    has_proba = not fmt.needs_python_object or hasattr(obj, "predict_proba")
    if has_proba:
        predict(fmt, obj, X)
    return {"load_s": loaded - start, "first_predict_s": predicted - loaded,
            "first_predict_proba_s": time.perf_counter() - predicted if has_proba else None,
            "sklearn_imported": "sklearn" in sys.modules,
            "floor_s": floor}, obj


def timer_floor() -> float:
    """The median cost of timing nothing here: below it, two first loads are a tie."""
    floor = []
    for _ in range(FLOOR_SAMPLES):
        begin = time.perf_counter()
        floor.append(time.perf_counter() - begin)
    return sorted(floor)[len(floor) // 2]


def first_use_in_worker(fmt_name: str, model: Path, X: Any) -> dict:
    """A prefork server worker's first load of `model` and first prediction on `X`, each
    timed alone, as the first acts of a worker forked from this process (the input read and
    the skops type review done here, before the fork), with the floor here.

    The worker's first writes to pages it shares with this process are copy-on-write faults
    inside its timings, as in any prefork server's worker (gunicorn, uvicorn --workers);
    see `persistbench.measure.sampling.first_in_fork`.
    """
    from persistbench.measure.sampling import first_in_fork
    from persistbench.sources.formats import FORMATS, predict_only

    fmt = FORMATS[fmt_name]
    prepared = fmt.prepare_load(model)
    floor = timer_floor()
    phase, predict_s = first_in_fork(lambda: fmt.load(model, prepared),
                                     lambda obj: predict_only(fmt, obj, X))
    return {"load_s": phase.seconds, "first_predict_s": predict_s, "floor_s": floor}


def serve(fmt_name: str, model: Path, rows: Path, modules: list[str]) -> None:
    """Server side: import, report, then load and predict once when told, then hold still.

    `import_s` covers the listed modules and `persistbench.sources.formats` (stdlib + numpy); the
    interpreter's own start-up is in the parent's `start_s`. The input rows are read before
    "ready", so an idle server holds them too and they never count as the model's memory.
    """
    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    import persistbench.sources.formats  # noqa: F401  (what `first_use` loads with)

    imported = time.perf_counter() - started
    X = load_input(rows)
    _say({"event": "ready", "import_s": imported, "pid": os.getpid()})
    if sys.stdin.readline().strip() != "serve":
        return
    served, held = first_use(fmt_name, model, X)
    _say({"event": "served", **served})
    sys.stdin.readline()  # hold the model (and its pages) until the parent has looked
    del held


def server_environment() -> dict[str, str]:
    """The harness's environment, one thread, and its import path (so a user's own model
    module, importable here, is importable in the server too); nothing is imported early."""
    own = [p for p in sys.path if p and not p.startswith((sys.prefix, sys.base_prefix))]
    extra = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {**os.environ, **THREAD_ENV, "PYTHONPATH": os.pathsep.join([*own, *extra])}


class Server:
    """Parent side of one server process; always `stop()` it (or use it as a context)."""

    def __init__(self, fmt_name: str, model: Path, rows: Path, modules: list[str],
                 stderr_path: Path):
        self.stderr_path = stderr_path
        command = [sys.executable, "-m", "persistbench.experiments.serving", "--format", fmt_name,
                   "--model", str(model), "--input", str(rows), "--modules", ",".join(modules)]
        self._started = time.perf_counter()
        with open(stderr_path, "wb") as stderr:  # a file: a chatty server never blocks
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=stderr, env=server_environment(),
                                         text=True)
        self.ready: dict = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, event: str) -> dict:
        """The next protocol message; anything a library printed to stdout is skipped."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                tail = self.stderr_path.read_text(errors="replace").strip().splitlines()
                raise RuntimeError(f"server exited with status {self.proc.returncode} before "
                                   f"{event!r}: {tail[-1] if tail else 'no message'}")
            with contextlib.suppress(json.JSONDecodeError):
                message = json.loads(line)
                if isinstance(message, dict) and "event" in message:
                    break
        if message.get("event") != event:
            raise RuntimeError(f"server said {message!r}, expected {event!r}")
        return message

    def wait_ready(self) -> dict:
        """Block until the server's imports are done; adds `start_s` (spawn to ready)."""
        self.ready = self._read("ready")
        self.ready["start_s"] = time.perf_counter() - self._started
        return self.ready

    def serve(self) -> dict:
        try:
            self.proc.stdin.write("serve\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: _read says how
        served = self._read("served")
        served["total_s"] = time.perf_counter() - self._started
        return served

    def memory(self) -> dict:
        from persistbench.measure.phases import process_memory

        return process_memory(self.pid)

    def stop(self) -> None:
        """Closing stdin tells the server to exit; one that does not is killed."""
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m persistbench.experiments.serving")
    parser.add_argument("--format", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--modules", default="")
    args = parser.parse_args()
    serve(args.format, args.model, args.input, [m for m in args.modules.split(",") if m])


if __name__ == "__main__":
    main()
