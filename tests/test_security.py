"""The security experiment through the real runner: crafted files are loaded only in children.

Every payload's only effect is a canary file inside the cell's scratch folder.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_plan

from persistbench.experiments import security
from persistbench.sources.formats import FORMATS

FORMATS_TRIED = ["pickle", "joblib-lz4", "cloudpickle", "skops", "onnx"]


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("security") / "results.json"
    planned = security.plan(["logreg"], ["medium"], FORMATS_TRIED, {"seed": 0})
    results = run_plan(out, planned, timeout_s=90)  # read() validates the file
    return {c["cell_id"].removeprefix("security/payload/small/"): c for c in results["cells"]}


def test_plan_is_one_untrained_cell_per_format():
    planned = security.plan(["logreg", "svc"], ["medium"], list(FORMATS), {})
    assert [c.format for c in planned] == [*FORMATS, "onnx"]
    assert planned[-1].variant == security.EXTERNAL
    assert all(not c.needs_model and c.model == "payload" and c.size == "small"
               for c in planned)


def test_pickle_family_runs_the_payload_and_the_audit_saw_it(cells):
    system = f"{os.system.__module__}.system"
    for fmt in ("pickle", "joblib-lz4"):
        cell = cells[fmt]
        assert cell["status"] == "ok", cell.get("reason")
        assert cell["code_executed"] is True
        assert cell["loader_outcome"] == "loaded"
        assert system in cell["imports_resolved"]
        assert "os.system" in [e["event"] for e in cell["audit_events"]]
        assert cell["static_audit_flagged"] is True


def test_cloudpickle_runs_shipped_code(cells):
    cell = cells["cloudpickle"]
    assert cell["code_executed"] is True
    events = cell["audit_events"]
    assert "code.__new__" in [e["event"] for e in events]  # the function arrived as bytecode
    assert any(e["event"] == "open" and security.CANARY in e["detail"] for e in events)
    assert cell["static_audit_flagged"] is True


def test_skops_refuses_unless_told_to_trust(cells):
    cell = cells["skops"]
    assert cell["code_executed"] is False
    assert cell["loader_outcome"] == "refused"
    assert "Untrusted" in cell["loader_message"]
    assert cell["trusting_listed_types"] == [f"{os.system.__module__}.system"]
    assert cell["code_executed_if_listed_types_trusted"] is True  # blind trust runs it
    assert cell["static_audit_flagged"] is True


def test_onnx_runs_no_code_and_keeps_to_its_folder(cells):
    custom = cells["onnx"]
    assert custom["code_executed"] is False and custom["loader_outcome"] == "refused"
    escape = cells[f"onnx/{security.EXTERNAL}"]
    assert escape["status"] == "ok"
    assert escape["read_outside_folder"] is False
    assert escape["loader_outcome"] == "refused"
    assert escape["static_audit_flagged"] is True
