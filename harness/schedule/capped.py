"""The static audit run in a child process whose memory and time the kernel caps.

The readers check their own budgets (`persistbench.audit.budget`), but some of their work
happens inside C code that checks nothing: protobuf parsing an ONNX file (6 MB of empty
nodes took 2 GB), `json.loads` of a skops schema (30 kB of zip made 900 MB of dicts),
decompressors. In a child the same file meets hard limits: an address-space cap of the
memory budget above what the child has mapped once its readers are imported, a CPU-time
cap and a wall-clock deadline, and the confinement of every untrusted read (it writes
nothing and starts nothing). Hitting a cap is a budget finding, like any other budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from persistbench.audit import AuditReport, Budget, Finding, Unreadable

GRACE_S = 5.0  # start-up and imports, beyond the audit's own time budget


def _budget_finding(path: Path, what: str) -> AuditReport:
    return AuditReport(str(path), "unknown", findings=[Finding(
        "budget", what, "the audit stops here; a loader would go on")])


def audit_capped(path: Path | str, trusted: tuple[str, ...] = (), confined: bool = True,
                 fork: bool = False) -> AuditReport:
    """`persistbench.audit.audit` in a capped child; raises `Unreadable` as it does.
    `fork`: a fork of this (preloaded, single-threaded) process, else a fresh interpreter."""
    path = Path(path)
    budget = Budget()
    # absolute: the child works in a folder of its own
    request = {"path": os.fsencode(path.absolute()).decode("latin-1"), "trusted": list(trusted),
               "confined": confined}
    with tempfile.TemporaryDirectory(prefix="persistbench-audit-") as scratch:
        if fork:
            from persistbench.schedule.forked import run_forked

            ended = run_forked(_static_in_fork, ({**request, "scratch": scratch},),
                               budget.seconds + GRACE_S)
            if ended.timed_out:
                return _budget_finding(path, f"too large to audit within {budget.seconds:g} s")
            returncode, stdout, stderr = ended.returncode, ended.output, ended.stderr
        else:
            try:
                proc = subprocess.run(
                    [sys.executable, "-I", "-B", "-m", "persistbench.schedule.capped",
                     json.dumps(request)], stdin=subprocess.DEVNULL, capture_output=True,
                    cwd=scratch, timeout=budget.seconds + GRACE_S,
                    env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
            except subprocess.TimeoutExpired:
                return _budget_finding(path, f"too large to audit within {budget.seconds:g} s")
            returncode, stdout = proc.returncode, proc.stdout
            stderr = proc.stderr.decode("utf-8", "backslashreplace")
    return _answer(path, returncode, stdout, stderr, budget)


def _answer(path: Path, returncode: int | None, stdout: bytes, stderr: str,
            budget: Budget) -> AuditReport:
    lines = stdout.splitlines()
    answer = json.loads(lines[-1]) if returncode == 0 and lines else None
    if answer is None:
        if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL:
            return _budget_finding(path, f"too large to audit within {budget.seconds:g} s "
                                         "of CPU time")
        tail = stderr.strip()[-200:].splitlines()
        tail = tail[-1] if tail else ""
        what = "out of memory" if "MemoryError" in tail or returncode == -signal.SIGABRT \
            else f"the audit's process ended with status {returncode}: {tail}"
        return _budget_finding(path, f"too large to audit within {budget.rss_bytes >> 20} "
                                     f"MiB of memory ({what})")
    if "unreadable" in answer:
        raise Unreadable(answer["unreadable"])
    report = AuditReport.from_json(answer)
    report.path = str(path)
    return report


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _static_in_fork(write_fd: int, request: dict) -> None:
    """In a child forked from a preloaded process: `main`, answering on the pipe."""
    os.chdir(request["scratch"])
    main(request, write_fd)


def main(request: dict, out_fd: int = 1) -> None:
    """In the child: import the readers, cap and confine, audit, print the report."""
    import joblib  # noqa: F401  (before the confinement: it probes /dev/shm on import)
    import numpy  # noqa: F401
    import psutil

    from persistbench.audit import audit

    budget = Budget()
    from persistbench.schedule.confine import Limits, apply_rlimits, confine

    # whatever is mapped from here on, resident memory stays under the budget
    room = budget.rss_bytes * 7 // 8 - psutil.Process().memory_info().rss  # pages mapped
    # before and touched later count too: an eighth of the budget is kept for them
    limits = Limits(writable=(os.getcwd(),), memory_bytes=_vm_size() + room,
                    cpu_s=int(budget.seconds) + 1)
    if request["confined"]:
        confine(limits)
    else:  # caps without confinement, where the user chose to audit without it
        apply_rlimits(limits)
    path = os.fsdecode(request["path"].encode("latin-1"))
    try:
        answer = audit(path, tuple(request["trusted"]), budget).to_json()
    except Unreadable as exc:
        answer = {"unreadable": str(exc)}
    data = (json.dumps(answer, ensure_ascii=True) + "\n").encode()
    while data:
        data = data[os.write(out_fd, data):]
    os._exit(0)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
