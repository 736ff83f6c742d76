"""compare: ratios, significance, flags, one-sided cells and exit codes on constructed inputs.

A is a real results file (fixture `report_runs`); B is A with chosen changes, so every
expected ratio is known exactly.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import html5lib
import pytest

from harness.report.compare import compare, measures

LOAD = "roundtrip/kneighbors/small/pickle-p5"
SIZE = "roundtrip/kneighbors/small/skops"
FASTER = "roundtrip/logreg/small/pickle"
NOISY = "roundtrip/logreg/small/cloudpickle"
GONE = "roundtrip/logreg/small/skops"
BROKEN = "roundtrip/logreg/small/pickle-p5"


def _cell(data: dict, cell_id: str) -> dict:
    return next(c for c in data["cells"] if c["cell_id"] == cell_id)


def _set_samples(cell: dict, key: str, samples: list[float]) -> None:
    cell[f"{key}_samples"] = samples
    ordered = sorted(samples)
    mid = len(ordered) // 2
    med = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    cell[key] = {"min": ordered[0], "median": med, "max": ordered[-1], "n": len(samples)}


@pytest.fixture
def pair(report_runs) -> tuple[dict, dict]:
    a = json.loads(report_runs["results"][0].read_text())
    base = _cell(a, LOAD)["load_s"]["median"]
    _set_samples(_cell(a, LOAD), "load_s", [base * (1 + i / 100) for i in range(6)])
    _set_samples(_cell(a, NOISY), "load_s", [base * k for k in (1, 2, 3, 4, 5, 6)])
    b = copy.deepcopy(a)
    _set_samples(_cell(b, LOAD), "load_s", [x * 2 for x in _cell(a, LOAD)["load_s_samples"]])
    _cell(b, SIZE)["file_bytes"] = int(_cell(a, SIZE)["file_bytes"] * 1.5)
    fast = _cell(b, FASTER)
    fast["load_s"] = {k: (v / 2 if k != "n" else v) for k, v in fast["load_s"].items()}
    fast["load_s_samples"] = [x / 2 for x in fast["load_s_samples"]]
    _set_samples(_cell(b, NOISY), "load_s", [base * k for k in (1.5, 2.5, 3.5, 4.5, 5.5, 6.5)])
    b["cells"] = [c for c in b["cells"] if c["cell_id"] != GONE]
    broken = _cell(b, BROKEN)
    for key in list(broken):
        if key not in ("cell_id", "experiment", "model", "size", "format"):
            del broken[key]
    broken.update(status="error", reason="load_step: ValueError: constructed")
    extra = copy.deepcopy(_cell(a, FASTER))
    extra["cell_id"] = "roundtrip/logreg/medium/pickle"
    extra["size"] = "medium"
    b["cells"].append(extra)
    return a, b


def _row(comp, cell_id: str, key: str):
    return next(r for r in comp.rows if r.cell_id == cell_id and r.key == key)


def test_ratios_flags_and_significance(pair):
    a, b = pair
    comp = compare(a, b, threshold_pct=10)
    slower = _row(comp, LOAD, "load_s")
    assert slower.ratio == pytest.approx(2.0)
    assert slower.p_value < 0.05 and slower.flag == "worse"
    bigger = _row(comp, SIZE, "file_bytes")
    assert bigger.ratio == pytest.approx(1.5, rel=1e-3) and bigger.flag == "worse"
    assert bigger.p_value is None  # a file size has no samples: the ratio decides
    faster = _row(comp, FASTER, "load_s")
    assert faster.ratio == pytest.approx(0.5) and faster.worse_by == pytest.approx(-0.5)
    noisy = _row(comp, NOISY, "load_s")
    assert noisy.ratio == pytest.approx(4 / 3.5)  # +14 %, but the samples overlap
    assert noisy.p_value > 0.05 and noisy.flag == "" and not noisy.decisive
    unchanged = [r for r in comp.rows if r.cell_id not in (LOAD, SIZE, FASTER, NOISY)]
    assert unchanged and all(r.ratio == 1.0 and r.flag == "" for r in unchanged)
    assert comp.only_a == [GONE]
    assert comp.only_b == ["roundtrip/logreg/medium/pickle"]
    assert comp.status_changes == [(BROKEN, "ok", "error")]
    assert not comp.cross_machine and all(r.normalised is None for r in comp.rows)
    worse = {w.split()[0].rstrip(":") for w in comp.regressions(40)}
    assert worse == {LOAD, SIZE, BROKEN}
    assert {w.split()[0].rstrip(":") for w in comp.regressions(60)} == {LOAD, BROKEN}


def test_every_unit_named_number_is_a_measure(pair):
    a, _ = pair
    found = measures(_cell(a, LOAD))
    assert {"dump_s", "load_s", "load_cold_s", "file_bytes", "dump_peak_rss_bytes",
            "load_peak_rss_bytes", "label_agreement"} <= set(found)
    assert found["load_s"].samples == tuple(_cell(a, LOAD)["load_s_samples"])
    assert not found["label_agreement"].lower_is_better


def test_nested_lists_are_matched_by_their_labels(report_runs):
    cell = next(c for c in json.loads(report_runs["results"][1].read_text())["cells"]
                if c["experiment"] == "inference" and c["status"] == "ok")
    found = measures(cell)
    point = next(p for p in cell["latency"] if p["runtime"] == "onnxruntime")
    key = f"latency[onnxruntime/{point['method']}/{point['batch_size']}].median_s"
    assert found[key].value == point["median_s"]
    assert found[key].samples == tuple(point["samples_s"])
    assert not found[key.replace("median_s", "rows_per_s")].lower_is_better
    assert "onnx_server.rss_after_predict_bytes" in measures(next(
        c for c in json.loads(report_runs["results"][1].read_text())["cells"]
        if c["experiment"] == "footprint"))


def test_few_repeats_need_disjoint_ranges(pair):
    """Two repeats cannot reach p < 0.05: the min..max ranges decide instead."""
    a, b = pair
    base = _cell(a, FASTER)["load_s"]["median"]
    _set_samples(_cell(a, FASTER), "load_s", [base, base * 3])
    _set_samples(_cell(b, FASTER), "load_s", [base * 2, base * 4])  # +50 %, ranges overlap
    _set_samples(_cell(a, NOISY), "load_s", [base, base * 1.1])
    _set_samples(_cell(b, NOISY), "load_s", [base * 2, base * 2.2])  # +100 %, disjoint
    comp = compare(a, b)
    overlapping, disjoint = _row(comp, FASTER, "load_s"), _row(comp, NOISY, "load_s")
    assert overlapping.ratio == pytest.approx(1.5) and overlapping.flag == ""
    assert disjoint.ratio == pytest.approx(2.0) and disjoint.flag == "worse"
    assert overlapping.p_value is not None and disjoint.p_value is not None
    _cell(b, FASTER)["predict_eval_s"] = _cell(a, FASTER)["predict_eval_s"] * 3
    once = _row(compare(a, b), FASTER, "predict_eval_s")  # one timing: noise unknown
    assert once.ratio == pytest.approx(3.0) and once.flag == "" and not once.decisive


def test_memory_noise_under_a_page_floor_is_not_flagged(pair):
    a, b = pair
    cell_a, cell_b = _cell(a, LOAD), _cell(b, LOAD)
    cell_a["load_peak_rss_bytes"], cell_b["load_peak_rss_bytes"] = 0, 8192
    row = _row(compare(a, b), LOAD, "load_peak_rss_bytes")
    assert row.ratio == float("inf") and row.flag == ""


def test_across_machines_times_are_normalised_by_bandwidth(pair):
    a, b = pair
    b["machine"]["machine_id"] = "faster-box"
    b["machine"]["calibration"] = {k: (v * 2 if k.endswith("_bps") else v)
                                   for k, v in a["machine"]["calibration"].items()}
    comp = compare(a, b)
    assert comp.cross_machine
    faster = _row(comp, FASTER, "load_s")  # half the time on a machine twice as fast
    assert faster.ratio == pytest.approx(0.5) and faster.normalised == pytest.approx(1.0)
    slower = _row(comp, LOAD, "load_s")
    assert slower.normalised == pytest.approx(4.0)
    assert _row(comp, SIZE, "file_bytes").normalised is None


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "compare", *argv],
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_html(pair, tmp_path, report_runs):
    a, b = pair
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    regress = _cli(str(pa), str(pb), "--fail-on-regression", "40", "--html",
                   str(tmp_path / "cmp.html"))
    assert regress.returncode == 1, regress.stderr
    assert "regression(s) beyond 40 %" in regress.stderr and LOAD in regress.stderr
    assert LOAD in regress.stdout and "worse" in regress.stdout
    assert GONE in regress.stdout  # one-sided cells are listed, not dropped
    page = tmp_path / "cmp.html"
    doc = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page.read_bytes())
    text = "".join(doc.itertext())
    assert LOAD in text and GONE in text and "roundtrip/logreg/medium/pickle" in text
    assert "http" not in page.read_text().replace("http://www.w3.org", "")

    real = str(report_runs["results"][0])
    same = _cli(real, real, "--fail-on-regression", "1")
    assert same.returncode == 0, same.stderr
    improved = _cli(str(pb), str(pa), "--fail-on-regression", "1000")
    assert improved.returncode == 0
    assert _cli(real).returncode == 2
    assert _cli(real, str(tmp_path / "missing.json")).returncode == 2
    assert _cli(real, real, "--fail-on-regression", "-5").returncode == 2
