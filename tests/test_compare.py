"""compare: ratios, significance, flags, one-sided cells and exit codes on constructed inputs.

A is a real results file (fixture `report_runs`); B is A with chosen changes, so every
expected ratio is known exactly.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import html5lib
import pytest

from persistbench.report.compare import Comparison, compare, measures
from persistbench.report.compare_output import smallest_flaggable
from persistbench.results.vocabulary import cpu_key

LOAD = "roundtrip/kneighbors/small/pickle-p5"
SIZE = "roundtrip/kneighbors/small/skops"
FASTER = "roundtrip/logreg/small/pickle"
NOISY = "roundtrip/logreg/small/cloudpickle"
GONE = "roundtrip/logreg/small/skops"
BROKEN = "roundtrip/logreg/small/pickle-p5"


def _cell(data: dict, cell_id: str) -> dict:
    return next(c for c in data["cells"] if c["cell_id"] == cell_id)


def _set_passes(cell: dict, key: str, passes: list[list[float]]) -> None:
    """A timing measured in several passes, as `run --runs K` keeps it."""
    pooled = sorted(v for p in passes for v in p)
    mid = len(pooled) // 2
    med = pooled[mid] if len(pooled) % 2 else (pooled[mid - 1] + pooled[mid]) / 2
    cell[key] = {"min": pooled[0], "median": med, "max": pooled[-1], "n": len(pooled),
                 "samples": pooled, "passes": passes}
    cell[f"{key}_samples"] = pooled
    # The planted figures are wall times only: without the CPU times of the same runs
    # beside them, compare judges them by wall time.
    cell.pop(cpu_key(key), None)
    cell.pop(f"{cpu_key(key)}_samples", None)


def _passes(base: float, factor: float = 1.0, jitter: float = 0.02) -> list[list[float]]:
    return [[base * factor * (1 + jitter * (i - 2 + j - 1) / 4) for i in range(5)]
            for j in range(3)]


def _timed_cells(data: dict) -> list[dict]:
    return [c for c in data["cells"] if c["status"] == "ok" and "load_s" in c]


@pytest.fixture
def pair(report_runs) -> tuple[dict, dict]:
    a = json.loads(report_runs["results"][0].read_text())
    for cell in _timed_cells(a):  # every timing measured in three tight passes
        _set_passes(cell, "load_s", _passes(cell["load_s"]["median"]))
    base = _cell(a, LOAD)["load_s"]["median"]
    _set_passes(_cell(a, NOISY), "load_s", [[base * k for k in (1, 2, 3)],
                                             [base * k for k in (4, 5, 6)], [base * 2] * 3])
    b = copy.deepcopy(a)
    _set_passes(_cell(b, LOAD), "load_s", _passes(base, 2.0))
    _cell(b, SIZE)["file_bytes"] = int(_cell(a, SIZE)["file_bytes"] * 1.5)
    fast = _cell(a, FASTER)["load_s"]["median"]
    _set_passes(_cell(b, FASTER), "load_s", _passes(fast, 0.5))
    _set_passes(_cell(b, NOISY), "load_s", [[base * k for k in (1.5, 2.5, 3.5)],
                                             [base * k for k in (4.5, 5.5, 6.5)],
                                             [base * 2.5] * 3])
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
    assert slower.ratio == pytest.approx(2.0) and slower.passes == (3, 3)
    assert slower.p_value < 0.05 and slower.flag == "worse" and slower.low > 1.1
    bigger = _row(comp, SIZE, "file_bytes")
    assert bigger.ratio == pytest.approx(1.5, rel=1e-3) and bigger.flag == "worse"
    assert bigger.p_value is None and bigger.note == "exact"  # a size: the ratio decides
    faster = _row(comp, FASTER, "load_s")
    assert faster.ratio == pytest.approx(0.5) and faster.flag == "better"
    assert faster.worse_by == pytest.approx(-0.5, abs=0.05)
    noisy = _row(comp, NOISY, "load_s")
    assert noisy.ratio == pytest.approx(1.25)  # +25 %, but the passes overlap
    assert noisy.verdict == "inconclusive" and noisy.flag == "" and not noisy.decisive
    assert noisy.low < 1.1 < noisy.high
    changed = (LOAD, SIZE, FASTER, NOISY)
    unchanged = [r for r in comp.rows if r.cell_id not in changed]
    assert unchanged and all(r.ratio == 1.0 and r.flag == "" for r in unchanged)
    assert {r.verdict for r in unchanged if r.key == "load_s"} == {"same"}
    assert comp.only_a == [GONE]
    assert comp.only_b == ["roundtrip/logreg/medium/pickle"]
    assert comp.status_changes == [(BROKEN, "ok", "error")]
    assert not comp.cross_machine and all(r.normalised is None for r in comp.rows)
    worse = {w.split()[0].rstrip(":") for w in comp.regressions(40)}
    assert worse == {LOAD, SIZE, BROKEN}
    assert {w.split()[0].rstrip(":") for w in comp.regressions(60)} == {LOAD, BROKEN}
    assert [r.verdict for r in comp.ordered()[:3]] == ["worse", "worse", "better"]


def test_one_pass_a_side_is_inconclusive_however_large_the_change(pair):
    a, b = pair
    for data, factor in ((a, 1.0), (b, 3.0)):  # one pass, as a plain `run` keeps it
        cell = _cell(data, FASTER)
        cell["load_s"] = {"min": 1.0 * factor, "median": 1.0 * factor, "max": 1.1 * factor,
                          "n": 5}
        cell["load_s_samples"] = [factor * x for x in (1.0, 1.0, 1.0, 1.05, 1.1)]
    row = _row(compare(a, b), FASTER, "load_s")
    assert row.ratio == pytest.approx(3.0) and row.passes == (1, 1)
    assert row.verdict == "inconclusive" and row.flag == "" and "1 pass" in row.note
    assert not [w for w in compare(a, b).regressions() if w.startswith(f"{FASTER} ")]


def test_a_machine_slower_for_every_cell_is_not_a_regression(pair):
    a, _ = pair
    b = copy.deepcopy(a)
    for cell in _timed_cells(b):
        _set_passes(cell, "load_s", _passes(cell["load_s"]["median"], 1.3))
    _set_passes(_cell(b, LOAD), "load_s", _passes(_cell(a, LOAD)["load_s"]["median"], 2.6))
    comp = compare(a, b)
    assert comp.factors["load_s"] == pytest.approx(1.3, rel=0.01)
    assert set(comp.shared_shift()) == {"load_s"}
    assert [(r.cell_id, r.key) for r in comp.flagged()] == [(LOAD, "load_s")]
    assert _row(comp, LOAD, "load_s").relative == pytest.approx(2.0, rel=0.01)
    absolute = compare(a, b, drift=False)  # every tight timing is now "worse"
    worse = {r.cell_id for r in absolute.flagged() if r.key == "load_s"}
    assert worse == {c["cell_id"] for c in _timed_cells(a)} - {NOISY}


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


def test_memory_noise_under_a_page_floor_is_not_flagged(pair):
    a, b = pair
    cell_a, cell_b = _cell(a, LOAD), _cell(b, LOAD)
    cell_a["load_peak_rss_bytes"], cell_b["load_peak_rss_bytes"] = 0, 8192
    cell_a["load_peak_rss_bytes_passes"] = [[0, 0], [0, 0], [0, 0]]
    cell_b["load_peak_rss_bytes_passes"] = [[8192, 4096], [8192, 0], [4096, 8192]]
    row = _row(compare(a, b), LOAD, "load_peak_rss_bytes")
    assert row.ratio == float("inf") and row.verdict == "same" and row.flag == ""


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


def test_figures_taken_with_different_methods_are_shown_not_ratioed(pair):
    from persistbench.measure import methods

    a, b = pair
    a["run"]["methods"] = methods.methods(methods.probe())
    b["run"]["methods"] = methods.methods(methods.SIMULATED["darwin"])
    b["machine"]["machine_id"] = "macos-arm64"
    # a cell the fixture leaves alone (its own peak may be 0 B: a small load can fit in
    # memory the process already has), with a 100x difference set on it
    planted = {LOAD, SIZE, FASTER, NOISY, GONE, BROKEN}
    cell = next(c for c in _timed_cells(a) if c["cell_id"] not in planted)
    cell["load_peak_rss_bytes"] = 2**20
    _cell(b, cell["cell_id"])["load_peak_rss_bytes"] = 100 * 2**20
    comp = compare(a, b)
    peak = _row(comp, cell["cell_id"], "load_peak_rss_bytes")
    assert peak.verdict == "method differs" and not peak.flag
    assert "clear_refs-vmhwm (A) vs rss-sampled-1ms (B)" in peak.note
    assert comp.regressions() == [r for r in comp.regressions() if "peak_rss" not in r]
    # Timings share the allocator on both sides: still compared.
    assert _row(comp, FASTER, "load_s").verdict != "method differs"
    assert comp.counts()["method differs"] > 0


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "persistbench", "compare", *argv],
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
    assert "kneighbors/small/pickle-p5" in regress.stdout and "worse" in regress.stdout
    assert GONE in regress.stdout  # one-sided cells are listed, not dropped
    assert "Benjamini-Hochberg" in regress.stdout  # the rule, with its numbers
    html = str(tmp_path / "cmp.html")  # a path is printed whole, however long tmp_path is
    assert max(len(line) for line in regress.stdout.splitlines() if html not in line) <= 80
    assert _cli(str(pa), str(pb), "--fail-on-regression").returncode == 1
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
    assert _cli(real, real, "--alpha", "2").returncode == 2


def test_aa_self_check_splits_one_run(pair, tmp_path):
    a, _ = pair
    three = tmp_path / "three.json"
    a["run"]["runs"] = 3
    three.write_text(json.dumps(a))
    refused = _cli("--aa", str(three))
    assert refused.returncode == 2 and "--runs 4" in refused.stderr
    for cell in _timed_cells(a):
        base = cell["load_s"]["median"]
        _set_passes(cell, "load_s", [[base * (1 + 0.01 * j)] * 3 for j in range(4)])
    a["run"]["runs"] = 4
    four = tmp_path / "four.json"
    four.write_text(json.dumps(a))
    done = _cli("--aa", str(four), "--fail-on-regression")
    assert done.returncode == 0, done.stderr
    assert "A/A: 0 of " in done.stdout and "first half" in done.stdout


def test_smallest_flaggable_change_is_the_threshold_plus_z_spreads():
    """At 95 % (z = 1.96), a time family of log spread 0.1 with a 10 % threshold flags
    from 1.1 x e^0.196; a memory family uses the memory threshold."""
    comp = Comparison("a", "b", "m", "m", threshold=10.0, memory_threshold=5.0, level=0.95,
                      spreads={"load_s": 0.1, "load_peak_rss_bytes": 0.0})
    assert smallest_flaggable(comp, "load_s") == pytest.approx(1.1 * math.exp(0.1959964), rel=1e-6)
    assert smallest_flaggable(comp, "load_peak_rss_bytes") == pytest.approx(1.05)
