"""Each format round-trips each small zoo model it supports, with real files and processes."""

from __future__ import annotations

import os

import pytest

from persistbench.experiments import Cell
from persistbench.experiments.roundtrip import StepContext, artefact
from persistbench.schedule.runner import run_cell
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import MODELS

PYTHON_FORMATS = [f for f, fmt in FORMATS.items() if fmt.needs_python_object]
PLAIN_MODELS = [m for m, spec in MODELS.items() if "custom-code" not in spec.tags]


def _cell(results: dict, model: str, fmt: str) -> dict:
    (cell,) = [c for c in results["cells"] if c["model"] == model and c["format"] == fmt]
    return cell


@pytest.mark.parametrize("model", PLAIN_MODELS)
@pytest.mark.parametrize("fmt", PYTHON_FORMATS)
def test_python_formats_round_trip_exactly(quick_results, model, fmt):
    cell = _cell(quick_results, model, fmt)
    assert cell["status"] == "ok", cell.get("reason")
    assert cell["roundtrip_equal"] is True
    assert cell["file_bytes"] > 0
    for phase in ("dump_s", "load_s", "load_cold_s"):
        assert cell[phase]["n"] >= 1
        assert 0 < cell[phase]["min"] <= cell[phase]["median"] <= cell[phase]["max"]
        assert len(cell[f"{phase}_samples"]) == cell[phase]["n"]
    assert cell["dump_peak_rss_bytes"] >= 0 and cell["load_peak_rss_bytes"] >= 0


@pytest.mark.parametrize("model", list(MODELS))
def test_onnx_is_measured_or_explained(quick_results, model):
    cell = _cell(quick_results, model, "onnx")
    if cell["status"] == "ok" and "classifier" in MODELS[model].tags:
        assert cell["label_agreement"] >= 0.95
        assert cell["format_traits"]["needs_python_object"] is False
    elif cell["status"] == "ok":
        assert cell["prediction_max_rel_diff"] < 1e-3
        assert cell["format_traits"]["needs_python_object"] is False
    else:
        assert cell["status"] == "unsupported" and cell["reason"]


def test_custom_code_needs_cloudpickle(quick_results):
    for fmt in ("pickle", "pickle-p5", "joblib", "joblib-zlib3"):
        cell = _cell(quick_results, "custom_code", fmt)
        assert cell["status"] == "unsupported"
        assert "lambda" in cell["reason"]
    cloud = _cell(quick_results, "custom_code", "cloudpickle")
    assert cloud["status"] == "ok" and cloud["roundtrip_equal"] is True


def test_protocols_and_skops_types_are_recorded(quick_results):
    assert _cell(quick_results, "logreg", "pickle")["pickle_protocol"] == __import__(
        "pickle").DEFAULT_PROTOCOL
    assert _cell(quick_results, "logreg", "pickle-p5")["pickle_protocol"] == 5
    assert _cell(quick_results, "logreg", "skops")["skops_untrusted_types"] == []
    forest = _cell(quick_results, "random_forest", "skops")["skops_untrusted_types"]
    assert "sklearn.tree._tree.Tree" in forest


@pytest.mark.parametrize("fmt", ["pickle", "joblib-lzma", "skops", "onnx"])
def test_file_bytes_is_the_file_on_disk(tmp_path, fmt):
    cell = Cell("roundtrip", "logreg", "small", fmt, options={"repeat": 1, "seed": 0, "starts": 0})
    from persistbench.sources.models import train_into_cache
    from persistbench.sources.resolve import resolve_spec

    train_into_cache(resolve_spec("logreg"), "small", 0)
    record = run_cell(cell, tmp_path, timeout_s=120)
    assert record["status"] == "ok", record.get("reason")
    path = artefact(StepContext(cell, tmp_path, {}, 0.0))
    assert record["file_bytes"] == os.path.getsize(path)
