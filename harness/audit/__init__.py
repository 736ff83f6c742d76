"""`persistbench audit FILE`: what loading a model file would do, found without loading it.

Nothing from the file is executed, imported or called. The file is read the way each real
loader would read it (`pickle.load`, `joblib.load` with its own compression detection,
`zipfile` for skops, protobuf for ONNX), never by its name or by trusting its first bytes
alone; what any of them would import or call is judged against an exact allow-list
generated from what scikit-learn, numpy and scipy pickle (`persistbench.audit.allowlist`).
Readings that disagree, data after the end and archives found inside other data are
findings; so is a file too large to audit within the budgets (`persistbench.audit.budget`).
Exit status: 0 nothing flagged, 1 flagged, 2 not a model file the audit understands.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from persistbench.audit.archive import read_skops
from persistbench.audit.budget import Budget
from persistbench.audit.onnxfile import read_onnx
from persistbench.audit.pickled import Reading, disagreement, read_joblib, read_pickle
from persistbench.audit.policy import Finding
from persistbench.audit.report import AuditReport, Unreadable, render

__all__ = ["AuditReport", "Budget", "Finding", "Unreadable", "audit", "render"]


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, kept = set(), []
    for f in findings:
        if (f.kind, f.name, f.position) not in seen:
            seen.add((f.kind, f.name, f.position))
            kept.append(f)
    return kept


def _went_somewhere(reading: Reading | None) -> bool:
    return bool(reading and (reading.complete or reading.walk.findings
                             or reading.walk.opcodes > 1))


def _pickle_report(path: Path, readings: list[Reading]) -> AuditReport:
    main = next((r for r in readings if r.complete), readings[0])
    walk = main.walk
    if walk.cloudpickle:
        kind = "cloudpickle"
    elif main.compression or walk.joblib_arrays or walk.wrapper_seen:
        kind = "joblib"
    else:
        kind = "pickle"
    findings = [f for r in readings for f in r.walk.findings]
    report = AuditReport(str(path), kind, main.compression, walk.protocol, walk.imports,
                         walk.calls, findings,
                         error=None if main.complete else main.error,
                         details={"loaders": {r.loader: "complete" if r.complete else r.error
                                              for r in readings},
                                  "joblib_arrays": walk.joblib_arrays,
                                  "nested_pickles": walk.nested_pickles,
                                  "opcodes": walk.opcodes})
    if walk.cloudpickle:
        report.notes.append("contains functions serialized by value (cloudpickle): their "
                            "code runs when the model is used, not while loading")
    return report


def audit(path: Path | str, trusted: tuple[str, ...] = (), budget: Budget | None = None
          ) -> AuditReport:
    """Audit one file; raises `Unreadable` when it is no model file the audit understands.

    `trusted`: the user's own module prefixes, accepted like scikit-learn's. A failure of
    the audit itself on a crafted file is a finding: the file is not known to be safe.
    """
    path = Path(path)
    try:
        return _audit(path, trusted, budget or Budget())
    except Unreadable:
        raise
    except (Exception, RecursionError) as exc:
        return AuditReport(str(path), "unknown", findings=[Finding(
            "audit-error", type(exc).__name__, f"the audit could not finish ({str(exc)[:200]}):"
            " the file is not known to be safe")])


def _audit(path: Path, trusted: tuple[str, ...], budget: Budget) -> AuditReport:
    try:
        with open(path, "rb") as raw:
            head = raw.read(64)
        if not head:
            raise Unreadable("empty file")
        is_zip = zipfile.is_zipfile(path)
        joblib = read_joblib(path, head, trusted, budget)
        # One reading stands for both loaders only when joblib's went to the end: the two
        # unpicklers read INT differently (`010`), so where joblib's stops pickle's may not.
        if (joblib and joblib.complete and joblib.compression is None
                and not joblib.walk.wrapper_seen):
            joblib.walk.loader = "pickle.load, joblib.load"  # the same bytes, the same way
            for finding in joblib.walk.findings:
                finding.loader = joblib.walk.loader
            plain = None
            readings = [joblib] if _went_somewhere(joblib) else []
        else:
            plain = read_pickle(path, head, trusted, budget)
            readings = [r for r in (joblib, plain) if _went_somewhere(r)]
        if is_zip:
            report = _zip_report(path, trusted, budget, readings)
        elif readings:
            report = _pickle_report(path, readings)
        elif plain or joblib:
            raise Unreadable(next(r.error for r in (joblib, plain) if r and r.error)
                             + " (not a model file: neither pickle, joblib, skops nor ONNX)")
        else:
            report = read_onnx(path, head, budget)
    except FileNotFoundError as exc:
        raise Unreadable("no such file") from exc
    except IsADirectoryError as exc:
        raise Unreadable("is a directory, not a model file") from exc
    except PermissionError as exc:
        raise Unreadable("permission denied") from exc
    odd = disagreement(plain, joblib)
    report.findings = _dedupe(report.findings + ([odd] if odd else []))
    return report


def _zip_report(path: Path, trusted: tuple[str, ...], budget: Budget,
                readings: list[Reading]) -> AuditReport:
    findings, types, error = read_skops(path, trusted, budget)
    for reading in readings:
        findings.append(Finding("polyglot", f"zip archive and {reading.loader}",
                                f"{reading.loader} reads a pickle from the same bytes "
                                "skops reads as an archive", 0, reading.loader))
        findings += reading.walk.findings
    if error and not findings:
        raise Unreadable(error)
    return AuditReport(str(path), "skops", imports=types, findings=findings, error=error,
                       details={"types": types})
