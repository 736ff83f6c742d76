"""The asv and pytest-benchmark fronts: thin, real, and honest about what they skip."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from persistbench.experiments import Cell
from persistbench.schedule import fronts
from persistbench.schedule.profiles import PROFILES, from_env
from persistbench.schedule.runner import measure_cell
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import MODELS, UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("value", "expected"), [(None, "quick"), ("", "quick"),
                                                 ("default", "default"), (" large ", "large")])
def test_profile_from_environment(value, expected):
    environ = {} if value is None else {"PERSISTBENCH_PROFILE": value}
    assert from_env(environ) == expected


@pytest.mark.parametrize("value", ["Quick", "true", "0", "fast"])
def test_unknown_profile_is_refused_with_the_valid_names(value):
    with pytest.raises(UsageError, match=r"PERSISTBENCH_PROFILE=.*quick, default, large"):
        from_env({"PERSISTBENCH_PROFILE": value})


def test_grid_follows_the_profile():
    grid = fronts.grid("default")
    assert grid.sizes == PROFILES["default"]["sizes"]
    assert grid.cells()[0] == (next(iter(MODELS)), "small", next(iter(FORMATS)))
    assert len(grid.cells()) == len(MODELS) * 2 * len(FORMATS)
    assert all(isinstance(p, str) for cell in grid.cells() for p in cell)


def test_rows_cycle_through_the_evaluation_rows():
    X = np.arange(6).reshape(3, 2)
    assert fronts.rows(X, 5)[:, 0].tolist() == [0, 2, 4, 0, 2]
    assert fronts.rows(["a", "b"], 3) == ["a", "b", "a"]


def test_fresh_path_keeps_one_timed_file():
    first = fronts.fresh_path("joblib")
    first.write_bytes(b"x")
    second = fronts.fresh_path("joblib")
    assert second != first and not first.exists() and not second.exists()
    assert second.suffix == FORMATS["joblib"].suffix


def test_dumped_skips_what_the_format_cannot_do(quick_results):
    with pytest.raises(fronts.NotMeasurable, match=r"unsupported: .*lambda") as info:
        fronts.dumped("custom_code", "small", "pickle")
    assert info.value.status == "unsupported"
    with pytest.raises(fronts.NotMeasurable, match="error: load: "):
        fronts.dumped("custom_code", "small", "skops")
    path, prepared = fronts.dumped("logreg", "small", "skops")
    assert path.stat().st_size > 0 and prepared["skops_untrusted_types"] == []


def test_the_fronts_sample_with_the_profile_s_stopping_rule(quick_results):
    quick = fronts.grid("quick")
    assert quick.precision == PROFILES["quick"]["precision"]
    assert quick.budget_s == PROFILES["quick"]["budget_s"]
    fixed = dataclasses.replace(quick, precision=None, repeat=7, budget_s=60.0)
    assert len(fronts.sampled("load_s", "logreg", "small", "pickle-p5", fixed).samples) == 7
    # Any interval is tight enough: the rule stops at the 6 samples an interval needs.
    loose = dataclasses.replace(quick, precision=1000.0, budget_s=60.0)
    assert len(fronts.sampled("load_s", "logreg", "small", "pickle-p5", loose).samples) == 6


def test_check_record_sorts_failures():
    ok = {"cell_id": "c", "status": "ok", "file_bytes": 1}
    assert fronts.check_record(ok) is ok
    with pytest.raises(fronts.NotMeasurable, match="unsupported: no"):
        fronts.check_record({"cell_id": "c", "status": "unsupported", "reason": "no"})
    with pytest.raises(fronts.NotMeasurable):
        fronts.check_record(None)
    with pytest.raises(RuntimeError, match="c timeout: killed"):
        fronts.check_record({"cell_id": "c", "status": "timeout", "reason": "killed"})


def test_measure_cell_is_the_runners_cell_record(quick_results, tmp_path):
    record = measure_cell(Cell("roundtrip", "logreg", "small", "pickle-p5",
                               options={"repeat": 1, "seed": 0, "starts": 0}), 120.0, tmp_path)
    assert record["status"] == "ok", record.get("reason")
    assert record["file_bytes"] > 0 and record["roundtrip_equal"] is True
    assert isinstance(record["dump_peak_rss_bytes"], int)
    assert record["dump_s"]["n"] == 1
    assert list(tmp_path.iterdir()) == []  # its scratch directory is gone


def _import_asv_suite(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("benchmarks.bench_persistence", None)
    return importlib.import_module("benchmarks.bench_persistence")


@pytest.fixture
def asv_suite(monkeypatch):
    return _import_asv_suite(monkeypatch)


def test_asv_suite_parameters_units_and_no_peakmem(asv_suite):
    grid = fronts.grid("quick")
    suite = asv_suite
    assert suite.RoundTrip.params == (grid.models, grid.sizes, grid.formats)
    for name in ("track_dump_s", "track_load_s", "track_load_cold_s"):
        assert getattr(suite.Quantities, name).unit == "seconds"
    for name in ("track_file_size", "track_dump_peak_rss", "track_load_peak_rss"):
        assert getattr(suite.PhaseMemory, name).unit == "bytes"
    assert suite.SharedMemory.track_shared_pss.unit == "bytes"
    assert not [n for cls in vars(suite).values() if isinstance(cls, type)
                for n in dir(cls) if n.startswith("peakmem_")]
    # setup_cache carries measured records only; fitted models never pass through it.
    assert not hasattr(suite.RoundTrip, "setup_cache")


def test_asv_grid_is_fixed_whatever_the_profile_variable_says(monkeypatch):
    monkeypatch.setenv("PERSISTBENCH_PROFILE", "default")
    suite = _import_asv_suite(monkeypatch)
    assert suite.GRID == fronts.grid(fronts.ASV_PROFILE) != fronts.grid("default")
    sys.modules.pop("benchmarks.bench_persistence", None)


def test_asv_version_follows_the_definitions_the_grid_and_the_suite(asv_suite):
    grid = asv_suite.GRID
    source = (ROOT / "benchmarks" / "bench_persistence.py").read_text()
    assert asv_suite.version == fronts.definitions_version(grid, source)
    assert fronts.definitions_version(grid, source + "#") != asv_suite.version
    assert fronts.definitions_version(fronts.grid("default"), source) != asv_suite.version


def test_asv_benchmarks_run_and_skip_like_asv_calls_them(asv_suite, quick_results):
    bench = asv_suite.RoundTrip()
    bench.setup("logreg", "small", "joblib")
    bench.time_dump("logreg", "small", "joblib")
    assert bench.target.stat().st_size > 0
    bench.time_load("logreg", "small", "joblib")
    quantities = asv_suite.Quantities()
    quantities.setup("logreg", "small", "joblib")
    assert 0 < quantities.track_load_s("logreg", "small", "joblib") < 10
    assert fronts.quantity("load_s", "logreg", "small", "joblib").protocol.name == \
        "warm-repeated"
    with pytest.raises(NotImplementedError, match="unsupported"):
        quantities.setup("custom_code", "small", "joblib")
    with pytest.raises(NotImplementedError, match="unsupported"):
        asv_suite.RoundTrip().setup("custom_code", "small", "joblib")
    with pytest.raises(NotImplementedError, match=r"^unsupported: "):
        asv_suite.PredictOnnx().setup("hist_gb", "small", 100)
    predict = asv_suite.PredictSklearn()
    predict.setup("logreg", "small", 100)
    assert len(predict.X) == 100
    predict.time_predict_sklearn("logreg", "small", 100)

    memory = asv_suite.PhaseMemory()
    records = {("logreg", "small", "joblib"): {"cell_id": "x", "status": "ok",
                                               "file_bytes": 10, "dump_peak_rss_bytes": 2,
                                               "load_peak_rss_bytes": 3},
               ("custom_code", "small", "joblib"): {"cell_id": "y", "status": "unsupported",
                                                    "reason": "no lambda"}}
    memory.setup(records, "logreg", "small", "joblib")
    assert memory.track_file_size(records, "logreg", "small", "joblib") == 10
    with pytest.raises(NotImplementedError, match="no lambda"):
        memory.setup(records, "custom_code", "small", "joblib")


@pytest.mark.slow
def test_asv_check_accepts_the_suite():
    done = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**_env(), "PERSISTBENCH_PROFILE": "quick"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


@pytest.mark.slow
def test_project_pytest_run_does_not_collect_the_benchmarks():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=_env())
    assert done.returncode == 0, done.stdout[-2000:]
    assert "tests/test_fronts.py" in done.stdout
    assert "benchmarks/" not in done.stdout


@pytest.fixture(scope="session")
def pytest_benchmark_json(tmp_path_factory, quick_results) -> Path:
    """The pytest-benchmark suite run as a user runs it, on one model in one format."""
    out = tmp_path_factory.mktemp("pytest-benchmark") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/pytest", "--benchmark-only", "-q",
         "-p", "no:cacheprovider", "-k", "logreg and pickle-p5", f"--benchmark-json={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**_env(), "PERSISTBENCH_PROFILE": "quick"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return out


def test_pytest_benchmark_suite_writes_json(pytest_benchmark_json):
    data = json.loads(pytest_benchmark_json.read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_dump[logreg-small-pickle-p5]", "test_load[logreg-small-pickle-p5]",
                     "test_load_cold[logreg-small-pickle-p5]"]
    for bench in data["benchmarks"]:
        assert bench["group"] == "pickle-p5"
        key = {"test_dump": "dump_s", "test_load": "load_s",
               "test_load_cold": "load_cold_s"}[bench["name"].split("[")[0]]
        # as many rounds as the harness's stopping rule took samples of the same quantity
        assert bench["stats"]["rounds"] == bench["extra_info"][key]["n"] >= 6
        assert bench["extra_info"]["protocol"] in ("warm-repeated", "cold-page-cache")
        assert bench["extra_info"]["file_bytes"] > 0
        assert isinstance(bench["extra_info"]["load_peak_rss_bytes"], int)
    assert data["machine_info"]["persistbench"]["profile"] == "quick"


def test_pytest_benchmark_suite_refuses_an_unknown_profile():
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/pytest",
                           "--benchmark-only", "--collect-only", "-q", "-p",
                           "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**_env(), "PERSISTBENCH_PROFILE": "yes"})
    assert done.returncode == 4
    assert "PERSISTBENCH_PROFILE='yes' is not a profile" in done.stderr + done.stdout


def test_report_renders_from_the_pytest_benchmark_json(pytest_benchmark_json, tmp_path):
    from persistbench.report.html import write_reports
    from persistbench.results.importers import read_any

    [data] = read_any(pytest_benchmark_json)
    [cell] = data["cells"]
    assert cell["cell_id"] == "roundtrip/logreg/small/pickle-p5" and cell["status"] == "ok"
    assert {"dump_s", "load_s", "load_cold_s", "file_bytes", "load_peak_rss_bytes"} <= set(cell)
    dump = next(b for b in json.loads(pytest_benchmark_json.read_text())["benchmarks"]
                if b["name"].startswith("test_dump"))
    assert cell["dump_s"]["n"] == dump["stats"]["rounds"]
    [page] = write_reports([pytest_benchmark_json], tmp_path)
    assert "pickle-p5" in page.read_text()
