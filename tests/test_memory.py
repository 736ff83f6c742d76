"""The per-phase peak memory measurement on a case whose answer is known: 200 MB of array."""

from __future__ import annotations

import pytest
from known_models import ARRAY_BYTES

from persistbench.experiments import Cell
from persistbench.measure.phases import PEAK_METHOD
from persistbench.schedule.runner import run_cell
from persistbench.sources.models import train_into_cache
from persistbench.sources.resolve import resolve_spec

MODEL = "known_models:array_holder"


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    train_into_cache(resolve_spec(MODEL), "custom", 0)
    out = {}
    for fmt in ("pickle", "pickle-p5", "joblib-mmap"):
        cell = Cell("roundtrip", MODEL, "custom", fmt,
                    options={"repeat": 2, "seed": 0, "starts": 0})
        out[fmt] = run_cell(cell, tmp_path_factory.mktemp(fmt), timeout_s=300)
        assert out[fmt]["status"] == "ok", out[fmt].get("reason")
    return out


@pytest.mark.skipif(PEAK_METHOD != "clear_refs-vmhwm", reason="needs Linux clear_refs")
def test_load_peak_is_the_array(records):
    peak = records["pickle-p5"]["load_peak_rss_bytes"]
    assert 0.85 * ARRAY_BYTES <= peak <= 1.15 * ARRAY_BYTES


@pytest.mark.skipif(PEAK_METHOD != "clear_refs-vmhwm", reason="needs Linux clear_refs")
def test_protocol_5_dump_needs_no_copy(records):
    default = records["pickle"]["dump_peak_rss_bytes"]
    p5 = records["pickle-p5"]["dump_peak_rss_bytes"]
    if records["pickle"]["pickle_protocol"] < 5:  # Python < 3.14: default protocol copies
        assert default >= 0.85 * ARRAY_BYTES
        assert p5 < 0.2 * default


@pytest.mark.skipif(PEAK_METHOD != "clear_refs-vmhwm", reason="needs Linux clear_refs")
def test_mmap_load_reads_nothing_up_front(records):
    assert records["joblib-mmap"]["load_peak_rss_bytes"] < 0.1 * ARRAY_BYTES
    assert records["joblib-mmap"]["roundtrip_equal"] is True
