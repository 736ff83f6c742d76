"""`persistbench audit FILE`: what loading a model file would do, found without loading it.

Nothing from the file is executed, imported or called: pickle-based files are walked opcode
by opcode (`harness.audit_pickle`), compressed joblib files are decompressed as a stream
(the format is told by its magic bytes, never by the file name), skops files are read
through their schema (`skops.io.get_untrusted_types`), ONNX files are parsed as protobuf
without their external data. The verdict is exit status 0 (nothing flagged), 1 (flagged)
or 2 (unreadable).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickletools
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from harness.audit_pickle import PickleWalk, StreamError, walk_stream
from harness.audit_policy import ALLOWED_PACKAGES, Finding, classify_global

READ_CHUNK = 1 << 16
ONNX_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"}


class Unreadable(Exception):
    """The file cannot be audited; the message says why in one line."""


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
    error: str | None = None  # the file became unreadable part-way (findings so far kept)

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    @property
    def exit_status(self) -> int:
        if self.findings:
            return 1
        return 2 if self.error else 0

    def to_json(self) -> dict:
        return {"path": self.path, "format": self.format, "compression": self.compression,
                "pickle_protocol": self.pickle_protocol, "flagged": self.flagged,
                "exit_status": self.exit_status, "imports": self.imports,
                "calls": self.calls, "findings": [f.to_json() for f in self.findings],
                "notes": self.notes, "details": self.details, "error": self.error}


# --------------------------------------------------------------------------- compression

class _ZlibReader(io.RawIOBase):
    """A zlib stream (joblib's `.z`) read incrementally; the stdlib has no file object for it."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._inflate = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._inflate.unconsumed_tail:
                data = self._inflate.decompress(self._inflate.unconsumed_tail, len(buffer))
            elif self._inflate.eof:
                return 0
            else:
                chunk = self._raw.read(READ_CHUNK)
                if not chunk:
                    raise EOFError("zlib stream ends early (truncated file?)")
                data = self._inflate.decompress(chunk, len(buffer))
            if data:
                buffer[:len(data)] = data
                return len(data)


class _Counted:
    """A decompressed stream with `tell()`: byte offsets in findings point into the pickle."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._offset += len(data)
        return data

    def readline(self) -> bytes:
        data = self._stream.readline()
        self._offset += len(data)
        return data

    def tell(self) -> int:
        return self._offset


def _lz4_open(raw: BinaryIO) -> BinaryIO:
    import lz4.frame

    return lz4.frame.open(raw, "rb")


def _zlib_open(raw: BinaryIO) -> BinaryIO:
    return io.BufferedReader(_ZlibReader(raw), READ_CHUNK)


# (name, magic test on the first bytes, opener of a decompressing stream)
COMPRESSIONS = (
    ("gzip", lambda head: head.startswith(b"\x1f\x8b"), lambda raw: gzip.GzipFile(fileobj=raw)),
    ("bz2", lambda head: head.startswith(b"BZh"), bz2.BZ2File),
    ("xz", lambda head: head.startswith(b"\xfd7zXZ\x00"), lzma.LZMAFile),
    ("lzma", lambda head: head.startswith(b"\x5d\x00\x00"), lzma.LZMAFile),
    ("lz4", lambda head: head.startswith(b"\x04\x22\x4d\x18"), _lz4_open),
    ("zlib", lambda head: len(head) >= 2 and head[0] & 0x0F == 8
     and (head[0] * 256 + head[1]) % 31 == 0, _zlib_open),
)


# Protocol 0 and 1 pickles have no header: they start with any opcode (e.g. `c` GLOBAL).
# ONNX files start with 0x08 (field 1, ir_version), which is not one of them.
_OPCODE_BYTES = {op.code.encode("latin-1") for op in pickletools.opcodes}


def detect(head: bytes) -> str:
    """Container kind from the magic bytes: pickle, zip, a compression name, or other."""
    if head.startswith(b"\x80") and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    for name, test, _ in COMPRESSIONS:
        if test(head):
            return name
    return "pickle" if head[:1] in _OPCODE_BYTES else "other"


# ------------------------------------------------------------------------------- pickle

def _pickle_report(path: Path, stream: BinaryIO, compression: str | None,
                   trusted: tuple[str, ...]) -> AuditReport:
    walk = PickleWalk(trusted=trusted)
    error = None
    trailing = False
    try:
        walk_stream(stream, walk)
        trailing = bool(stream.read(1))
    except (StreamError, EOFError, OSError, lzma.LZMAError, zlib.error, RuntimeError) as exc:
        error = f"stream unreadable after {walk.opcodes} opcodes: {exc}"
    if walk.opcodes == 0 and error:
        raise Unreadable(error)
    if walk.cloudpickle:
        kind = "cloudpickle"
    elif compression or walk.joblib_arrays:
        kind = "joblib"
    else:
        kind = "pickle"
    report = AuditReport(str(path), kind, compression, walk.protocol, walk.imports, walk.calls,
                         walk.findings, error=error,
                         details={"joblib_arrays": walk.joblib_arrays,
                                  "nested_pickles": walk.nested_pickles,
                                  "opcodes": walk.opcodes})
    if trailing:
        report.notes.append("data after the pickle's end: ignored by pickle.load, but not "
                            "written by pickle or joblib")
    if walk.cloudpickle:
        report.notes.append("contains functions or classes serialized by value (cloudpickle): "
                            "their code runs when the model is used")
    return report


# -------------------------------------------------------------------------------- skops

def _skops_report(path: Path, trusted: tuple[str, ...]) -> AuditReport:
    import skops.io as sio

    try:
        with zipfile.ZipFile(path) as archive:
            if "schema.json" not in archive.namelist():
                raise Unreadable("zip archive without schema.json: not a skops file")
        untrusted = sorted(sio.get_untrusted_types(file=path))
    except Unreadable:
        raise
    except Exception as exc:  # skops raises many kinds on a damaged schema
        raise Unreadable(f"skops schema unreadable: {type(exc).__name__}: {exc}") from exc
    findings = []
    for name in untrusted:
        module, _, attr = name.rpartition(".")
        reason = classify_global(module, attr, trusted)
        if reason:
            findings.append(Finding("untrusted-type", name, reason))
    report = AuditReport(str(path), "skops", imports=untrusted, findings=findings,
                         details={"untrusted_types": untrusted})
    if untrusted and not findings:
        report.notes.append("skops asks to trust these types; all are from "
                            f"{', '.join(ALLOWED_PACKAGES + trusted)}")
    return report


# --------------------------------------------------------------------------------- ONNX

def _onnx_graphs(model):
    """Every graph of the model: the main one, subgraphs in attributes, functions' bodies."""
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    pending.append(attr.g)
                pending.extend(attr.graphs)


def _onnx_tensors(graph):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _onnx_report(path: Path) -> AuditReport:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise Unreadable(f"neither pickle, joblib, skops nor ONNX ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from exc
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise Unreadable("neither pickle, joblib, skops nor ONNX (no ONNX graph in it)")
    opsets = {d.domain or "ai.onnx": d.version for d in model.opset_import}
    known = ONNX_DOMAINS | {f.domain for f in model.functions}
    domains: set[str] = set()
    findings: list[Finding] = []
    external: list[dict] = []
    folder = path.resolve().parent
    graphs = list(_onnx_graphs(model))
    nodes = [n for g in graphs for n in g.node] + [n for f in model.functions for n in f.node]
    for node in nodes:
        domains.add(node.domain or "ai.onnx")
        if node.domain not in known:
            findings.append(Finding("op-domain", f"{node.domain}:{node.op_type}",
                                    "custom operator domain: runs native code from a library "
                                    "the serving program must register"))
    for tensor in (t for g in graphs for t in _onnx_tensors(g)):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        escapes = os.path.isabs(location) or not target.is_relative_to(folder)
        external.append({"tensor": tensor.name, "location": location, "escapes": escapes,
                         "exists": target.exists()})
        if escapes:
            findings.append(Finding("external-data", f"{tensor.name} -> {location}",
                                    "external data outside the model's folder: loading reads "
                                    "a file the model should not reach"))
    details = {"opsets": opsets, "op_domains": sorted(domains), "ir_version": model.ir_version,
               "producer": f"{model.producer_name} {model.producer_version}".strip(),
               "external_data": external}
    return AuditReport(str(path), "onnx", imports=sorted(domains), findings=findings,
                       details=details)


# ---------------------------------------------------------------------------------- entry

def audit(path: Path | str, trusted: tuple[str, ...] = ()) -> AuditReport:
    """Audit one file; raises `Unreadable` when nothing could be read from it.

    `trusted`: the user's own module prefixes, accepted like scikit-learn's.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            head = raw.read(16)
            if not head:
                raise Unreadable("empty file")
            kind = detect(head)
            if kind == "pickle":
                raw.seek(0)
                return _pickle_report(path, raw, None, trusted)
            for name, _, opener in COMPRESSIONS:
                if kind == name:
                    raw.seek(0)
                    with opener(raw) as stream:
                        return _pickle_report(path, _Counted(stream), name, trusted)
    except FileNotFoundError as exc:
        raise Unreadable("no such file") from exc
    except IsADirectoryError as exc:
        raise Unreadable("is a directory, not a model file") from exc
    except PermissionError as exc:
        raise Unreadable("permission denied") from exc
    if kind == "zip":
        return _skops_report(path, trusted)
    return _onnx_report(path)


def render(report: AuditReport) -> str:
    """The human-readable verdict."""
    what = report.format + (f", {report.compression}-compressed" if report.compression else "")
    if report.pickle_protocol is not None:
        what += f", pickle protocol {report.pickle_protocol}"
    lines = [f"{report.path}: {what}"]
    if report.imports:
        label = {"skops": "untrusted types", "onnx": "op domains"}.get(report.format,
                                                                        "imports")
        lines.append(f"  {label} ({len(report.imports)}): {', '.join(report.imports)}")
    if report.calls:
        lines.append(f"  calls on load ({len(report.calls)}): {', '.join(report.calls)}")
    for key in ("opsets", "external_data"):
        if report.details.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {report.details[key]}")
    lines += [f"  note: {note}" for note in report.notes]
    for finding in report.findings:
        at = f" (byte {finding.position})" if finding.position is not None else ""
        lines.append(f"  FLAGGED {finding.kind}: {finding.name}{at}: {finding.reason}")
    if report.error:
        lines.append(f"  unreadable: {report.error}")
    verdict = {0: "clean: nothing outside the allow-list",
               1: f"flagged: {len(report.findings)} finding(s); do not load this file unless "
                  "you trust its source",
               2: "unreadable"}[report.exit_status]
    lines.append(f"  verdict: {verdict}")
    return "\n".join(lines)
