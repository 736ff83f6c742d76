"""The audit's load stage: load the file with its real loader in a confined child, and
report what the load tried.

The static walk reads the file without running it, and every static reader can be fooled
by a stream its loader reads differently. This stage does not read: it loads, inside the
confinement of `schedule/confine.py`, so whatever the file does cannot take effect, and
what it attempted is seen from three places a payload cannot all silence: the child's audit
hook streams each event before the kernel acts on it (`schedule/loadchild.py`), seccomp
kills the child at a forbidden system call (the parent sees SIGSYS), and the child's scratch
folder is inspected afterwards. Globals the loader resolved are judged by the same
allow-list as the static walk's, so a name the walk missed is flagged here.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from persistbench.audit import AuditReport, Finding
from persistbench.audit.policy import VALUE, classify, resolve, shape_judged
from persistbench.schedule.launch import (
    CPU_S,
    Ahead,
    cancel,
    child_env,
    memory_cap,
    start_child,
)

WALL_S = 15.0
TOTAL_S = 28.0  # both stages of one audit end within this
MIN_LOAD_S = 2.0  # less than this left for the load stage: a finding, not a hurried load
# A joblib file is a pickle too: pickle.load reads it up to the first array's bytes (where a
# crafted file can put opcodes that only pickle.load runs), then stops, cheaply.
LOADERS = {"pickle": ("pickle.load", "joblib.load"), "cloudpickle": ("pickle.load",),
           "joblib": ("joblib.load", "pickle.load"), "skops": ("skops.io.load",),
           "onnx": ("onnxruntime",)}
PICKLED = ("pickle", "cloudpickle", "joblib")
MAX_EVENTS = 10_000


@dataclass
class LoadStage:
    """What the confined load did."""

    loaders: tuple[str, ...]
    confined: dict | None = None
    resolved: list[str] = field(default_factory=list)  # module.qualname, as shown
    found: list[tuple[str, str]] = field(default_factory=list)  # (module, qualname) each
    attempts: list[dict] = field(default_factory=list)
    outcomes: list[dict] = field(default_factory=list)
    ending: str = "finished"  # finished | killed-at-system-call | cpu | memory | time | crashed
    detail: str = ""
    written: list[str] = field(default_factory=list)
    peak_bytes: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"loaders": list(self.loaders), "confined": self.confined,
                "resolved": self.resolved, "attempts": self.attempts,
                "outcomes": self.outcomes, "ending": self.ending, "detail": self.detail,
                "written": self.written, "peak_bytes": self.peak_bytes,
                "seconds": round(self.seconds, 3)}


def _parse(lines: list[bytes], events: list[dict]) -> None:
    for line in lines:
        if len(events) < MAX_EVENTS:
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"attempt": "garbled event line",
                               "detail": line[:200].decode("ascii", "replace")})


def _events(fd: int, deadline: float) -> tuple[list[dict], bool]:
    """Read the child's event lines until it closes the pipe or the deadline passes."""
    events, buffer = [], b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return events, True
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return events, False
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        _parse(lines, events)


def _ending(returncode: int, timed_out: bool, cpu_s: int, wall_s: float) -> tuple[str, str]:
    if timed_out:
        return "time", f"still loading after {wall_s:g} s of wall time; killed"
    if returncode >= 0:
        return ("finished", "") if returncode == 0 else \
            ("crashed", f"the loading process exited with status {returncode}")
    name = signal.Signals(-returncode).name
    if name == "SIGSYS":
        return "killed-at-system-call", ("the confinement killed the load at a forbidden "
                                         "system call (a program, a socket, another process)")
    if name == "SIGXCPU":
        return "cpu", f"over its {cpu_s} s CPU-time cap"
    return "crashed", f"the loading process died of {name}"


def _load_in_fork(write_fd: int, request: dict, env: dict) -> None:
    """In a child forked from a preloaded process: the fresh interpreter's `main`."""
    from persistbench.schedule import loadchild

    os.environ.update(env)
    loadchild.main({**request, "fd": write_fd})


def run_load_stage(path: Path, fmt: str, *, wall_s: float = WALL_S, cpu_s: int = CPU_S,
                   memory_bytes: int | None = None, fork: bool = False,
                   trusted: tuple[str, ...] = (), ahead: Ahead | None = None) -> LoadStage:
    """Load `path` as `fmt` in a confined child; never raises for the file. `fork`: a
    fork of this (preloaded, single-threaded) process, else a fresh interpreter, or the
    one `ahead` started already (with the caps and trusted packages given to it).
    `trusted` (the user's `--trust`) are imported before confinement, like the loader's
    library: a trusted package loading its own native library is not the file's doing."""
    stage = LoadStage(LOADERS[fmt])
    go = {"loaders": list(stage.loaders), "cloudpickle": fmt == "cloudpickle"}
    scratch = ahead.scratch if ahead else Path(tempfile.mkdtemp(prefix="persistbench-load-"))
    request = {"path": str(Path(path).resolve()), "scratch": str(scratch),
               "memory_bytes": memory_bytes or memory_cap(path, fork), "cpu_s": cpu_s,
               "trusted": list(trusted), **go}
    try:
        if ahead:
            started = time.monotonic()
            with contextlib.suppress(BrokenPipeError):  # a child that died: its status says
                os.write(ahead.go_fd, (json.dumps(go) + "\n").encode())
            os.close(ahead.go_fd)
            _collect(stage, ahead.proc, ahead.read_fd, started, wall_s, cpu_s)
        elif fork:
            _forked_load(stage, request, child_env(scratch), wall_s, cpu_s)
        else:
            started = time.monotonic()
            proc, read_fd = start_child(request, child_env(scratch))
            _collect(stage, proc, read_fd, started, wall_s, cpu_s)
        stage.written = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return stage


def _forked_load(stage: LoadStage, request: dict, env: dict, wall_s: float,
                 cpu_s: int) -> None:
    from persistbench.schedule.forked import run_forked

    started = time.monotonic()
    ended = run_forked(_load_in_fork, (request, env), wall_s)
    stage.seconds = time.monotonic() - started
    events: list[dict] = []
    _parse([line for line in ended.output.split(b"\n") if line], events)
    _end(stage, events, ended.returncode, ended.timed_out, ended.stderr, cpu_s, wall_s)


def _end(stage: LoadStage, events: list[dict], returncode: int | None, timed_out: bool,
         stderr: str, cpu_s: int, wall_s: float) -> None:
    _absorb(stage, events)
    if stage.ending == "finished":  # the child may have said otherwise already
        stage.ending, stage.detail = _ending(returncode if returncode is not None else -9,
                                             timed_out, cpu_s, wall_s)
    if stage.ending == "crashed" and stderr:
        stage.detail += ": " + stderr.strip()[-300:]


def _collect(stage: LoadStage, proc: subprocess.Popen, read_fd: int, started: float,
             wall_s: float, cpu_s: int) -> None:
    """The child's events until it ends or `wall_s` from `started` passes, then its end."""
    try:
        try:
            events, timed_out = _events(read_fd, started + wall_s)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            stderr = proc.communicate()[1]
        stage.seconds = time.monotonic() - started
        _end(stage, events, proc.returncode, timed_out,
             stderr.decode("utf-8", "backslashreplace"), cpu_s, wall_s)
    finally:
        os.close(read_fd)


def _absorb(stage: LoadStage, events: list[dict]) -> None:
    for event in events:
        if "resolved" in event:  # module:qualname (a qualname is dotted since protocol 4)
            module, _, qualname = str(event["resolved"]).partition(":")
            if f"{module}.{qualname}" not in stage.resolved:
                stage.resolved.append(f"{module}.{qualname}")
                stage.found.append((module, qualname))
        elif "attempt" in event:
            stage.attempts.append({"what": str(event["attempt"]),
                                   "detail": str(event.get("detail", ""))})
        elif "loader" in event:
            stage.outcomes.append(event)
            if event.get("outcome") == "memory":
                stage.ending, stage.detail = "memory", "over its memory cap (MemoryError)"
        elif "confined" in event:
            stage.confined = event["confined"]
        elif "unconfinable" in event:
            stage.ending, stage.detail = "crashed", f"cannot confine: {event['unconfinable']}"
        elif "done" in event:
            stage.peak_bytes = event.get("peak_bytes")


def findings(stage: LoadStage, report: AuditReport, trusted: tuple[str, ...]) -> list[Finding]:
    """The load stage's findings: attempts, a kill or a cap, files written, and globals
    outside the allow-list that the static walk did not already flag.

    ctypes calls are the trusted package's own when the user trusted one the file uses:
    LightGBM and XGBoost rebuild their boosters through their native library in
    `__setstate__` (seccomp, Landlock and the caps still hold that code)."""
    walked = set(report.imports) | set(report.calls)
    native = any(n.startswith(t + ".") for n in walked for t in trusted)
    out = [Finding("load-attempt", a["what"], f"tried while loading: {a['detail']}",
                   loader="confined load") for a in stage.attempts
           if not (native and a["what"].startswith("ctypes."))]
    if stage.ending != "finished":
        kind = "load-blocked" if stage.ending == "killed-at-system-call" else "load-cap"
        if stage.ending == "crashed":
            kind = "load-crashed"
        out.append(Finding(kind, stage.ending, stage.detail, loader="confined load"))
    out += [Finding("load-attempt", "wrote a file", f"the load created {name} in its "
                    "scratch folder", loader="confined load") for name in stage.written[:20]]
    out += [Finding("load-attempt", "permission denied", o.get("message", ""),
                    loader=o["loader"]) for o in stage.outcomes if o.get("outcome") == "blocked"]
    static = {f.name for f in report.findings}
    # A pickle without PROTO is protocol 0, whose Python 2 names (`copy_reg`) the unpickler
    # maps as the walk does; other formats resolve Python 3 names.
    protocol = 5 if report.format not in PICKLED else (report.pickle_protocol or 0)
    for name, (module, qualname) in zip(stage.resolved, stage.found, strict=True):
        module, qualname = resolve(module, qualname, protocol)
        if f"{module}.{qualname}" in static or name in static:
            continue
        if shape_judged((module, qualname)) and f"{module}.{qualname}" in walked:
            continue  # the walk saw it and judged its arguments (getattr, partial)
        reason = classify(module, qualname, VALUE, trusted)
        if reason:
            out.append(Finding("import", f"{module}.{qualname}", f"resolved by the loader: "
                               f"{reason}", loader="confined load"))
    return out


def summary(stage: LoadStage) -> str:
    """One line for the text report."""
    how = "confined" if stage.confined else "NOT confined"
    parts = []
    for o in stage.outcomes:
        what = o.get("type") if o.get("outcome") == "loaded" else o.get("message", "")
        parts.append(f"{o['loader']}: {o.get('outcome')} {what} in {o.get('seconds', 0):.2f} s")
    if stage.ending != "finished":
        parts.append(f"{stage.ending}: {stage.detail}")
    attempts = f"{len(stage.attempts)} attempt(s)" if stage.attempts else "nothing attempted"
    return (f"load stage ({how}, {stage.seconds:.2f} s): " + "; ".join(parts or ["no loader ran"])
            + f"; {len(stage.resolved)} globals resolved; {attempts}")


def add_load_stage(report: AuditReport, trusted: tuple[str, ...] = (),
                   started: float | None = None, fork: bool = False,
                   ahead: Ahead | None = None) -> LoadStage | None:
    """Run the load stage for an audited file and fold its findings into the report.

    Skipped when the static walk already stopped at one of its budgets (the file is
    flagged, and a bomb should not get a second go) or the format has no loader here;
    a child started `ahead` is then cancelled before it reads anything.
    `started` (monotonic): when the static stage began; both end within `TOTAL_S`."""
    skipped = None
    if report.format not in LOADERS:
        skipped = f"load stage: no loader for {report.format} files"
    elif any(f.kind in ("budget", "audit-error") for f in report.findings):
        skipped = "load stage: skipped, the static walk stopped at a budget"
    left = TOTAL_S - (time.monotonic() - started) if started is not None else WALL_S
    if skipped is None and left < MIN_LOAD_S:
        report.findings.append(Finding("budget", "load stage", "the static walk took the "
                                       f"audit's {TOTAL_S:g} s: no time left to load it"))
    elif skipped is None:
        stage = run_load_stage(Path(report.path), report.format, wall_s=min(WALL_S, left),
                               fork=fork, trusted=trusted, ahead=ahead)
        report.details["load_stage"] = stage.to_json()
        report.notes.append(summary(stage))
        report.findings += findings(stage, report, trusted)
        return stage
    else:
        report.notes.append(skipped)
    if ahead:
        cancel(ahead)
    return None
