"""Footprint: both kinds of fresh server run, report numbers, and import what they should."""

from __future__ import annotations

import pytest
from conftest import run_plan

from persistbench.experiments import footprint

FIELDS = ("import_s", "load_s", "first_predict_s", "rss_after_predict_bytes")


@pytest.mark.slow
def test_onnx_and_sklearn_servers_report_and_unconvertible_is_unsupported(tmp_path):
    cells = footprint.plan(["logreg", "custom_code"], ["small"], ["onnx", "pickle"],
                           {"repeat": 2, "seed": 0})
    assert [c.format for c in cells] == ["onnx", "onnx"]
    results = run_plan(tmp_path / "r.json", cells, timeout_s=300)
    by_model = {c["model"]: c for c in results["cells"]}
    ok = by_model["logreg"]
    assert ok["status"] == "ok", ok.get("reason")
    for key in ("onnx_server", "sklearn_server"):
        server = ok[key]
        assert server["n"] == 2 and len(server["samples"]) == 2
        assert all(server[field] > 0 for field in FIELDS)
        assert server["uss_after_predict_bytes"] <= server["rss_after_predict_bytes"]
    assert ok["onnx_server"]["sklearn_imported"] is False  # numpy + onnxruntime only
    assert ok["sklearn_server"]["sklearn_imported"] is True
    bad = by_model["custom_code"]
    assert bad["status"] == "unsupported" and "FunctionTransformer" in bad["reason"]
