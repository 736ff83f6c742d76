"""ONNX files: parsed as protobuf without their external data, within a size budget.

The runtime runs the operators the graph names, so a custom operator domain is native code
the serving program must register; external data outside the model's folder is a file the
model should not reach. Bytes the parser does not keep (unknown fields, a second message
merged into the first) can carry a whole other file and are a finding.
"""

from __future__ import annotations

import os
from pathlib import Path

from persistbench.audit.budget import Budget
from persistbench.audit.policy import Finding
from persistbench.audit.report import AuditReport, Unreadable

LOADER = "onnxruntime"
ONNX_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"}
IR_VERSION_TAG = 0x08  # field 1 (ir_version), varint: how every ONNX writer starts


def _graphs(model):
    """Every graph of the model: the main one, subgraphs in attributes."""
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    pending.append(attr.g)
                pending.extend(attr.graphs)


def _tensors(graph):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _external(model, graphs, path: Path) -> tuple[list[dict], list[Finding]]:
    import onnx

    external, findings = [], []
    folder = path.resolve().parent
    for tensor in (t for g in graphs for t in _tensors(g)):
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
                                    "external data outside the model's folder: loading "
                                    "reads a file the model should not reach", None, LOADER))
    return external, findings


def read_onnx(path: Path, head: bytes, budget: Budget) -> AuditReport:
    size = path.stat().st_size
    if head[0] != IR_VERSION_TAG:
        raise Unreadable("neither pickle, joblib, skops nor ONNX (unknown first bytes)")
    if size > budget.onnx_bytes:
        return AuditReport(str(path), "onnx", findings=[Finding(
            "budget", f"{size:,} bytes", f"too large to audit within {budget.onnx_bytes:,} "
            "bytes (an ONNX file is parsed whole)", None, LOADER)])
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise Unreadable(f"neither pickle, joblib, skops nor ONNX ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from exc
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise Unreadable("neither pickle, joblib, skops nor ONNX (no ONNX graph in it)")
    findings: list[Finding] = []
    kept = model.ByteSize()
    model.DiscardUnknownFields()
    if model.ByteSize() != kept or kept != size:
        findings.append(Finding("polyglot", "bytes the ONNX parser does not keep",
                                f"{size - model.ByteSize():,} of {size:,} bytes are unknown "
                                "fields or a second message: room for another file", None,
                                LOADER))
    known = ONNX_DOMAINS | {f.domain for f in model.functions}
    graphs = list(_graphs(model))
    nodes = [n for g in graphs for n in g.node] + [n for f in model.functions for n in f.node]
    domains = {n.domain or "ai.onnx" for n in nodes}
    for node in nodes:
        if node.domain not in known:
            findings.append(Finding("op-domain", f"{node.domain}:{node.op_type}",
                                    "custom operator domain: runs native code from a library "
                                    "the serving program must register", None, LOADER))
    external, escapes = _external(model, graphs, path)
    details = {"opsets": {d.domain or "ai.onnx": d.version for d in model.opset_import},
               "op_domains": sorted(domains), "ir_version": model.ir_version,
               "producer": f"{model.producer_name} {model.producer_version}".strip(),
               "external_data": external}
    return AuditReport(str(path), "onnx", imports=sorted(domains), findings=findings + escapes,
                       details=details)
