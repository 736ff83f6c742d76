"""The audit's verdict on one file, as data and as text."""

from __future__ import annotations

from dataclasses import dataclass, field

from persistbench.audit.policy import Finding


class Unreadable(Exception):
    """Not a model file the audit understands; the message says why in one line."""


@dataclass
class AuditReport:
    path: str
    format: str
    compression: str | None = None
    pickle_protocol: int | None = None
    imports: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    error: str | None = None  # the loaders stop part-way (findings before that point kept)

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    @property
    def exit_status(self) -> int:
        if self.findings:
            return 1
        return 2 if self.error else 0

    @classmethod
    def from_json(cls, data: dict) -> AuditReport:
        """The report `to_json` wrote (in the process that audited the file)."""
        fields = {k: data[k] for k in ("path", "format", "compression", "pickle_protocol",
                                       "imports", "calls", "notes", "details", "error")}
        return cls(**fields, findings=[Finding(**f) for f in data["findings"]])

    def to_json(self) -> dict:
        return {"path": self.path, "format": self.format, "compression": self.compression,
                "pickle_protocol": self.pickle_protocol, "flagged": self.flagged,
                "exit_status": self.exit_status, "imports": self.imports,
                "calls": self.calls, "findings": [f.to_json() for f in self.findings],
                "notes": self.notes, "details": self.details, "error": self.error}


def render(report: AuditReport) -> str:
    """The human-readable verdict."""
    what = report.format + (f", {report.compression}-compressed" if report.compression else "")
    if report.pickle_protocol is not None:
        what += f", pickle protocol {report.pickle_protocol}"
    lines = [f"{report.path}: {what}"]
    if report.imports:
        label = {"skops": "types", "onnx": "op domains"}.get(report.format, "imports")
        lines.append(f"  {label} ({len(report.imports)}): {', '.join(report.imports)}")
    if report.calls:
        lines.append(f"  calls on load ({len(report.calls)}): {', '.join(report.calls)}")
    for key in ("opsets", "external_data"):
        if report.details.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {report.details[key]}")
    lines += [f"  note: {note}" for note in report.notes]
    for finding in report.findings:
        at = f" (byte {finding.position})" if finding.position is not None else ""
        by = f" [{finding.loader}]" if finding.loader else ""
        lines.append(f"  FLAGGED {finding.kind}: {finding.name}{at}{by}: {finding.reason}")
    if report.error:
        lines.append(f"  unreadable: {report.error}")
    verdict = {0: "clean: nothing outside the allow-list",
               1: f"flagged: {len(report.findings)} finding(s); do not load this file unless "
                  "you trust its source",
               2: "unreadable"}[report.exit_status]
    lines.append(f"  verdict: {verdict}")
    return "\n".join(lines)
