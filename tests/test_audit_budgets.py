"""Denial of service against the audit: every input ends with exit 1 within 30 s and 1 GiB,
and no output crashes on bytes that are not UTF-8.

The inputs are small files that cost the readers far more than their size: lists shared
through the memo (the shipped-code scan), one state dict applied by many BUILDs, a skops
schema of millions of empty dicts, an ONNX graph of millions of empty nodes, and the
corpus's bombs. The limits are the audit's own promise (its budgets), not timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks.audit_corpus.payloads import PAYLOADS
from persistbench.audit import Budget, audit

LIMIT_S = 30.0
LIMIT_BYTES = 1 << 30


def _binget(i: int) -> bytes:
    return b"h" + bytes([i])


def shared_lists(calls: int = 380) -> bytes:
    """Lists of 64 references to one list, three levels: 64**3 slots behind every call."""
    out = bytearray(b"\x80\x04]q\x000")
    for level in (1, 2, 3):
        out += b"]q" + bytes([level]) + b"(" + _binget(level - 1) * 64 + b"e0"
    out += b"cbuiltins\nmax\nq\x040"  # outside the allow-list (`list` is a value type)
    out += b"(" + (_binget(4) + _binget(3) + b"\x85R") * calls + b"t."
    return bytes(out)


def shared_state(pairs: int = 20_000, builds: int = 20_000) -> bytes:
    """One dict of `pairs` entries, the state of `builds` objects."""
    out = bytearray(b"\x80\x04cbuiltins\nobject\nq\x000}q\x01(")
    out += b"K\x01K\x02" * pairs + b"u0("
    out += (_binget(0) + b")R" + _binget(1) + b"b") * builds + b"t."
    return bytes(out)


def skops_many_dicts(path: Path) -> None:
    text = b'{"__class__":"x","content":[' + b"{}," * 10_600_000 + b"{}]}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("schema.json", text)


def onnx_empty_nodes(path: Path) -> None:
    graph = b"\x0a\x00" * 3_000_000  # GraphProto.node, empty, three million times
    length, size = bytearray(), len(graph)
    while size > 0x7F:
        length.append(size & 0x7F | 0x80)
        size >>= 7
    length.append(size)
    path.write_bytes(b"\x08\x07\x3a" + bytes(length) + graph)


def test_shared_containers_are_scanned_once(tmp_path):
    """The shipped-code scan visits each container once: 380 calls over 64**3 shared slots
    used to keep the audit busy for minutes; they now fit easily in a few seconds' budget."""
    path = tmp_path / "shared.pkl"
    path.write_bytes(shared_lists())
    report = audit(path, budget=Budget(seconds=5.0))
    assert not [f for f in report.findings if f.kind == "budget"]
    assert report.exit_status == 1  # builtins.max called: not what a model does


def test_a_shared_state_dict_is_checked_once(tmp_path):
    path = tmp_path / "state.pkl"
    path.write_bytes(shared_state(pairs=5_000, builds=5_000))
    report = audit(path, budget=Budget(seconds=5.0))
    assert not [f for f in report.findings if f.kind == "budget"]


def test_a_relative_path_is_audited_from_where_the_user_stands(tmp_path, monkeypatch):
    from persistbench.schedule.capped import audit_capped

    (tmp_path / "model.pkl").write_bytes(b"\x80\x04}\x94.")
    monkeypatch.chdir(tmp_path)
    report = audit_capped("model.pkl")
    assert report.exit_status == 0 and report.path == "model.pkl"


def test_a_schema_of_millions_of_values_is_refused_before_parsing(tmp_path):
    path = tmp_path / "bomb.skops"
    skops_many_dicts(path)
    report = audit(path)
    assert any(f.kind == "budget" and "JSON values" in f.reason for f in report.findings)


RUNNER = """
import json, resource, subprocess, sys, time
started = time.monotonic()
proc = subprocess.run([sys.executable, "-m", "persistbench", "audit", sys.argv[1]],
                      capture_output=True)
print(json.dumps({"status": proc.returncode, "seconds": time.monotonic() - started,
                  "peak_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                  "stderr": proc.stderr.decode("utf-8", "replace")[-300:]}))
"""


def run_audit(path: Path) -> dict:
    """`persistbench audit FILE` from a fresh process: its wall time and the largest
    resident size among the processes it started (the CLI and its children)."""
    out = subprocess.run([sys.executable, "-c", RUNNER, str(path)], capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    if name == "shared-lists.pkl":
        path.write_bytes(shared_lists())
    elif name == "shared-state.pkl":
        path.write_bytes(shared_state())
    elif name == "many-dicts.skops":
        skops_many_dicts(path)
    elif name == "empty-nodes.onnx":
        onnx_empty_nodes(path)
    else:
        payload = next(p for p in PAYLOADS if p.name == name)
        payload.write(path, tmp_path / "canary")
    return path


DOS = ["shared-lists.pkl", "shared-state.pkl", "many-dicts.skops", "empty-nodes.onnx",
       *[p.name for p in PAYLOADS if p.technique == 5]]


@pytest.mark.slow
@pytest.mark.parametrize("name", DOS)
def test_every_denial_of_service_input_ends_flagged_within_30_s_and_1_gib(tmp_path, name):
    result = run_audit(_write(tmp_path, name))
    assert result["status"] == 1, result
    assert result["seconds"] < LIMIT_S, result
    assert result["peak_bytes"] < LIMIT_BYTES, result


@pytest.mark.parametrize("name, data, status", [
    (b"\xff\xfename.pkl", b"\x80\x04}\x94.", 0),
    (b"surrogate.pkl", b"\x80\x04X\x03\x00\x00\x00\xed\xb3\xbfX\x03\x00\x00\x00\xed\xb3\xbf"
                       b"\x93)R.", 1)])
def test_names_and_strings_that_are_not_utf8_never_crash_the_output(tmp_path, name, data,
                                                                     status):
    path = Path(os.fsdecode(bytes(tmp_path) + b"/" + name))  # surrogates stand for the bytes
    path.write_bytes(data)
    for extra in ([], ["--json"], ["--static-only"]):
        proc = subprocess.run([sys.executable, "-m", "persistbench", "audit", path, *extra],
                              capture_output=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8",
                                   "HOME": str(tmp_path)})
        assert proc.returncode == status, proc.stderr
        assert b"Traceback" not in proc.stderr
