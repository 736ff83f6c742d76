"""Any front's output -> the one results schema: results files, pytest-benchmark, asv."""

from __future__ import annotations

import json
import math

import pytest
from asv.results import Results
from asv.runner import BenchmarkResult

from persistbench.report.data import load
from persistbench.results.importers import read_any
from persistbench.results.schema import ResultsError, write_atomic

ASV_PARAMS = [["'logreg'", "'custom_code'"], ["'small'"], ["'pickle'"]]
MACHINE = {"arch": "aarch64", "cpu": "Neoverse-N1", "machine": "box", "num_cpu": "4",
           "os": "Linux 6.8.0", "ram": str(16 * 2**30)}


def test_results_file_passes_through(quick_results, tmp_path):
    path = tmp_path / "run.json"
    write_atomic(path, quick_results)
    assert read_any(path) == [quick_results]


def _asv_results(directory, commit: str, date: int, dump: list, load_: list, size: list):
    """A results directory written by asv's own code, as `asv run` leaves it."""
    (directory / "box").mkdir(parents=True, exist_ok=True)
    (directory / "box" / "machine.json").write_text(json.dumps({**MACHINE, "version": 1}))
    params = {**MACHINE, "python": "3.11", "scikit-learn": "1.9.1"}
    result = Results(params, {"scikit-learn": "1.9.1"}, commit, date, "3.11", "venv-3.11",
                     {"PERSISTBENCH_PROFILE": "quick"})
    for name, values, samples in (
            ("bench_persistence.Quantities.track_dump_s", dump, [[0.01, 0.02, 0.03], None]),
            ("bench_persistence.Quantities.track_load_s", load_, [None, None]),
            ("bench_persistence.RoundTrip.time_load", [v * 2 if v else v for v in load_],
             [None, None]),
            ("bench_persistence.PhaseMemory.track_file_size", size, [None, None])):
        bench = {"name": name, "params": ASV_PARAMS, "version": "1"}
        numbers = [3 if s else None for s in samples]
        result.add_result(bench, BenchmarkResult(values, samples, numbers, 0, "", None),
                          record_samples=True)
    result.save(str(directory))


def test_asv_results_directory_becomes_cells(tmp_path):
    nan = math.nan
    _asv_results(tmp_path, "a" * 40, 1_700_000_000_000, [0.02, nan], [None, nan], [1234, nan])
    _asv_results(tmp_path, "b" * 40, 1_800_000_000_000, [0.02, nan], [0.005, nan], [999, nan])
    [data] = read_any(tmp_path)
    assert data["run"]["commit"] == "b" * 40 and data["run"]["profile"] == "quick"
    machine = data["machine"]
    assert machine["machine_id"].endswith("-asv") and machine["arch"] == "aarch64"
    assert machine["ram_bytes"] == 16 * 2**30 and machine["cores_logical"] == 4
    assert machine["packages"] == {"scikit-learn": "1.9.1"}
    cells = {c["model"]: c for c in data["cells"]}
    ok = cells["logreg"]
    assert ok["status"] == "ok" and ok["file_bytes"] == 999
    assert ok["dump_s"]["median"] == pytest.approx(0.02)
    assert (ok["dump_s"]["min"], ok["dump_s"]["max"]) == (0.01, 0.03)
    assert ok["load_s"]["median"] == pytest.approx(0.005)
    assert ok["load_hot_loop_s"]["median"] == pytest.approx(0.01)
    assert ok["protocols"]["load_s"] == "warm-repeated"
    assert ok["protocols"]["load_hot_loop_s"] == "hot-loop"
    skipped = cells["custom_code"]
    assert skipped["status"] == "unsupported" and "skipped" in skipped["reason"]
    [machine_results] = load([tmp_path])
    assert len(machine_results.cells) == 2


def test_failed_asv_benchmark_is_an_error_cell(tmp_path):
    nan = math.nan
    _asv_results(tmp_path, "c" * 40, 1_700_000_000_000, [0.02, nan], [None, nan], [1234, nan])
    [data] = read_any(tmp_path)
    failed = next(c for c in data["cells"] if c["model"] == "logreg")
    assert failed["status"] == "error" and "Quantities.track_load_s" in failed["reason"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "not a JSON results file"),
    (json.dumps({"cells": []}), "neither a persistbench/1 results file"),
    (json.dumps({"benchmarks": [], "machine_info": {}, "datetime": "x"}),
     "not written by persistbench's suite"),
])
def test_unreadable_inputs_are_named(tmp_path, content, message):
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError, match=message):
        read_any(path)


def test_empty_directory_is_not_asv_results(tmp_path):
    with pytest.raises(ResultsError, match="no asv results"):
        read_any(tmp_path)
