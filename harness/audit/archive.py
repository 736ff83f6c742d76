"""skops files: a zip archive read the way `zipfile` (and so `skops.io.load`) reads it.

`zipfile` finds an archive from its end, so data may precede it, follow it, or hide in gaps
between members; each of those is a finding, as are duplicate names (the last one wins),
members skops does not write, and sizes over budget. The schema is then walked as data:
every (module, class) it names, with the skops node type that builds it, is judged by the
same generated allow-list as pickles.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from persistbench.audit.budget import Budget
from persistbench.audit.policy import CALL, PARTIAL, SHAPES, VALUE, Finding, allowlist, classify

LOADER = "skops.io.load"
MEMBER = re.compile(r"^[0-9]+\.(npy|npz)$")
EOCD = b"PK\x05\x06"


def _flag(findings: list[Finding], kind: str, name: str, reason: str) -> None:
    findings.append(Finding(kind, name, reason, None, LOADER))


def _layout(path: Path, infos: list[zipfile.ZipInfo], start_dir: int) -> list[Finding]:
    """Members laid end to end from byte 0, then the central directory, then the end record."""
    findings: list[Finding] = []
    size = path.stat().st_size
    expected = 0
    with open(path, "rb") as raw:
        for info in sorted(infos, key=lambda i: i.header_offset):
            if info.header_offset != expected:
                _flag(findings, "polyglot", f"zip member {info.filename!r}",
                      f"starts at byte {info.header_offset}, not {expected}: other data "
                      "lies before or between the archive's members")
                return findings
            raw.seek(info.header_offset)
            header = raw.read(30)
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                _flag(findings, "polyglot", info.filename, "no local header where the "
                      "central directory points")
                return findings
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            expected = info.header_offset + 30 + name_len + extra_len + info.compress_size
            if info.flag_bits & 0x08:
                expected += 16  # data descriptor
        if expected != start_dir:
            _flag(findings, "polyglot", "zip central directory", f"at byte {start_dir}, not "
                  f"{expected}: data lies between the members and the directory")
        raw.seek(max(0, size - 22))
        tail = raw.read(22)
    if tail[:4] != EOCD or tail[20:22] != b"\x00\x00":
        _flag(findings, "polyglot", "zip end record", "the file does not end with the zip "
              "end record: data or a comment follows the archive")
    return findings


def _schema_nodes(schema: Any):
    """Every node of the schema tree that names a type (module, class, loader, node)."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__module__" in node or "__class__" in node or "__loader__" in node:
                yield node
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def _judge(node: dict, trusted: tuple[str, ...], findings: list[Finding]) -> str:
    module, cls, loader = (node.get("__module__"), node.get("__class__"),
                           node.get("__loader__"))
    text = f"{module}.{cls}"
    if not (isinstance(module, str) and isinstance(cls, str) and isinstance(loader, str)):
        _flag(findings, "schema", repr((module, cls, loader))[:200], "schema node without a "
              "plain module, class and loader")
        return text
    if loader not in allowlist()["skops_loaders"]:
        _flag(findings, "schema", f"{loader} {text}", "skops node type never written for "
              "scikit-learn, numpy or scipy objects")
    if loader == "MethodNode":  # getattr(obj, name): the method is what is used
        name = node.get("content", {}).get("func") if isinstance(node.get("content"),
                                                                  dict) else None
        cls = f"{cls}.{name}"
        text = f"{module}.{cls}"
    # PartialNode builds functools.partial whatever class it declares
    if (module, cls) in SHAPES or loader == "PartialNode":
        func = node.get("content", {}).get("func") if isinstance(node.get("content"),
                                                                  dict) else None
        target = (func.get("__module__"), func.get("__class__")) if isinstance(func,
                                                                               dict) else None
        if target not in SHAPES[PARTIAL]:
            _flag(findings, "shape", f"{text}({target})", "functools.partial around "
                  "anything but the callables scikit-learn itself wraps")
        return text
    # ConstructorFromReduceNode calls the class with the file's arguments: a call, not a value
    use = CALL if loader == "ConstructorFromReduceNode" else VALUE
    reason = classify(module, cls, use, trusted)
    if reason:
        _flag(findings, "untrusted-type", text, reason)
    return text


def _reused_ids(schema: Any, findings: list[Finding]) -> None:
    """skops builds a node id once (`get_tree` returns the first node of that id for every
    later one): nodes sharing an id must declare the same type, or the type judged at one
    place is not the one built there."""
    declared: dict[Any, tuple] = {}
    for node in _schema_nodes(schema):
        if "__id__" not in node or not isinstance(node["__id__"], int | str):
            continue
        kind = (node.get("__module__"), node.get("__class__"))
        loader = node.get("__loader__")
        first = declared.setdefault(node["__id__"], (*kind, loader))
        if first[:2] != kind or (loader != first[2] and "CachedNode" not in (loader, first[2])):
            _flag(findings, "schema", f"node id {node['__id__']!r}", "declared as "
                  f"{first[0]}.{first[1]} ({first[2]}) and as {kind[0]}.{kind[1]} ({loader}): "
                  "skops builds the first for both")


def read_skops(path: Path, trusted: tuple[str, ...], budget: Budget
               ) -> tuple[list[Finding], list[str], str | None]:
    """(findings, types named, error) for a zip archive read as a skops file."""
    findings: list[Finding] = []
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > budget.archive_members:
                _flag(findings, "budget", f"{len(infos)} members", "too large to audit "
                      f"within {budget.archive_members:,} archive members")
                return findings, [], None
            findings += _layout(path, infos, archive.start_dir)
            names = [i.filename for i in infos]
            for name in sorted({n for n in names if names.count(n) > 1}):
                _flag(findings, "polyglot", f"zip member {name!r}", "named twice: zipfile "
                      "reads the last one, other tools the first")
            for name in names:
                if name != "schema.json" and not MEMBER.match(name):
                    _flag(findings, "archive", f"zip member {name!r}", "not a member skops "
                          "writes (schema.json, numbered .npy/.npz arrays)")
            if sum(i.file_size for i in infos) > budget.decompressed_bytes:
                _flag(findings, "budget", "archive members", "too large to audit within "
                      f"{budget.decompressed_bytes:,} decompressed bytes")
            if "schema.json" not in names:
                return findings, [], "zip archive without schema.json: not a skops file"
            with archive.open("schema.json") as member:
                text = member.read(budget.schema_bytes + 1)
        if len(text) > budget.schema_bytes:
            _flag(findings, "budget", "schema.json", "too large to audit within "
                  f"{budget.schema_bytes:,} bytes")
            return findings, [], None
        # Each value costs tens of bytes parsed: 30 kB of zip held 10 M empty dicts, 900 MB
        # as Python objects. Counted first (in C), so the parse is never started.
        values = text.count(b",") + text.count(b"{") + text.count(b"[")
        if values > budget.schema_values:
            _flag(findings, "budget", "schema.json", "too large to audit within "
                  f"{budget.schema_values:,} JSON values")
            return findings, [], None
        schema = json.loads(text)
    except RecursionError:
        _flag(findings, "budget", "schema.json", "nested too deep to audit")
        return findings, [], None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        return findings, [], f"skops schema unreadable: {type(exc).__name__}: {exc}"
    _reused_ids(schema, findings)
    types = sorted({_judge(node, trusted, findings) for node in _schema_nodes(schema)})
    return findings, types, None
