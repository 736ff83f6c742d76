"""What a user's own process experiences, checked on cases whose answer is known: a file
resident or evicted, a planted slow first load, a memory map paged in by the first
prediction, fresh-interpreter starts, the allocator and noise records."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import run_plan
from known_models import PLANTED_FIRST_LOAD_S, READER_BYTES

from persistbench.experiments import roundtrip
from persistbench.measure import noise
from persistbench.measure import phases as measure
from persistbench.measure.machine import calibrate
from persistbench.measure.phases import PEAK_METHOD, evict_verified, resident_fraction
from persistbench.measure.sampling import sample
from persistbench.results.protocols import WARM_REPEATED
from persistbench.results.schema import read
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import train_into_cache
from persistbench.sources.resolve import resolve_spec

SHM = Path("/dev/shm")


def _fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    with open("/proc/mounts") as fh:
        for line in fh:
            mount, fstype = line.split()[1:3]
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best):
                best, kind = mount, fstype
    return kind


needs_tmpfs = pytest.mark.skipif(not SHM.is_dir() or _fs_type(SHM) != "tmpfs",
                                 reason="needs /dev/shm on tmpfs")


def test_a_written_file_is_resident_and_eviction_empties_it(tmp_path):
    if _fs_type(tmp_path) in ("tmpfs", "overlay"):
        pytest.skip(f"{tmp_path} is on {_fs_type(tmp_path)}: eviction cannot work there")
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(4 * 2**20))
    assert resident_fraction(path) == 1.0
    fraction, why_not = evict_verified(path)
    assert why_not is None and fraction <= measure.COLD_MAX_RESIDENT
    path.read_bytes()
    assert resident_fraction(path) == 1.0


@needs_tmpfs
def test_eviction_on_tmpfs_is_reported_not_trusted():
    path = SHM / f"persistbench-test-{os.getpid()}.bin"
    try:
        path.write_bytes(os.urandom(2**20))
        fraction, why_not = evict_verified(path)
        assert fraction == 1.0 and "100%" in why_not and "tmpfs" in why_not
    finally:
        path.unlink(missing_ok=True)


@needs_tmpfs
def test_cold_loads_and_cold_calibration_on_tmpfs_are_unsupported(tmp_path):
    path = SHM / f"persistbench-test-{os.getpid()}.pkl"
    try:
        path.write_bytes(pickle.dumps(np.arange(10)))
        out = roundtrip.cold_loads(FORMATS["pickle"], path, {}, None, repeat=3, budget_s=5.0)
        assert out["load_cold_status"] == "unsupported" and "tmpfs" in out["load_cold_reason"]
        assert out["load_cold_resident_fraction"] == 1.0 and "load_cold_s" not in out
    finally:
        path.unlink(missing_ok=True)
    shm_dir = SHM / f"persistbench-test-{os.getpid()}"
    try:
        cal = calibrate(shm_dir, nbytes=2**20)
        assert cal["cold_read_bps"] is None and "tmpfs" in cal["cold_read_unsupported_reason"]
        assert cal["page_cache_read_bps"] > 0
    finally:
        shm_dir.rmdir()


def test_the_first_run_is_kept_apart_from_the_samples():
    calls = []

    def planted():
        calls.append(1)
        if len(calls) == 1:
            import time

            time.sleep(0.2)

    series = sample(WARM_REPEATED, planted, repeat=4, budget_s=60.0)
    assert len(calls) == 4 + 2 and len(series.samples) == 4 and series.short_reason is None
    assert series.first >= 0.2 and max(series.samples) < 0.2
    summary = roundtrip.timing("load", series, [1e-7])
    assert summary["load_s"]["samples"] == series.samples
    assert summary["load_s"]["floor_s"] == 1e-7


def test_a_spent_budget_is_said():
    series = sample(WARM_REPEATED, lambda: None, repeat=5, budget_s=-1.0)
    assert len(series.samples) == 1 and "1 samples short of 5 samples" in series.short_reason


def test_ties_are_the_original_s_equal_top_two():
    proba = np.array([[0.5, 0.5], [0.3, 0.7], [1 / 3, 1 / 3 + 1e-12]])
    assert roundtrip.tied_rows_mask(proba).tolist() == [True, False, True]


def test_allocator_is_the_default_unless_the_user_tuned_it():
    assert measure.allocator({"PATH": "/bin"})["name"] == "default"
    tuned = measure.allocator({"MALLOC_ARENA_MAX": "2", "LD_PRELOAD": "libjemalloc.so"})
    assert tuned["name"] == "tuned"
    assert tuned["environment"] == {"LD_PRELOAD": "libjemalloc.so", "MALLOC_ARENA_MAX": "2"}


def test_noise_readings_and_steal_share(tmp_path):
    snap = noise.noise_snapshot()
    assert set(snap) >= {"load_average", "cpu_affinity", "cpu_quota", "steal_ticks"}
    start = {"steal_ticks": [10, 1000]}
    end = {"steal_ticks": [60, 2000]}
    assert noise.noise_summary(start, end)["steal_fraction"] == pytest.approx(0.05)
    assert noise.noise_summary(None, end)["steal_fraction"] is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert noise.cpu_quota(tmp_path) == pytest.approx(1.5)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert noise.cpu_quota(tmp_path) is None


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    """A real run of three known cells: a memory map, its eager twin, a slow first load."""
    planned = []
    for model, fmt in (("array_reader", "joblib-mmap"), ("array_reader", "pickle-p5"),
                       ("slow_first_load", "pickle-p5")):
        train_into_cache(resolve_spec(f"known_models:{model}"), "custom", 0)
        planned += roundtrip.plan([f"known_models:{model}"], ["custom"], [fmt],
                                  {"repeat": 2, "seed": 0})
    output = tmp_path_factory.mktemp("truth") / "results.json"
    run_plan(output, planned, timeout_s=300)
    return output


@pytest.fixture(scope="module")
def cells(run_file) -> dict:
    out = {}
    for record in read(run_file)["cells"]:
        assert record["status"] == "ok", record.get("reason")
        out[(record["model"].split(":")[1], record["format"])] = record
    return out


@pytest.mark.slow
def test_the_run_records_its_allocator_and_noise_and_the_report_shows_them(run_file, tmp_path):
    from persistbench.report.html import write_reports

    run = read(run_file)["run"]
    assert run["allocator"]["name"] in ("default", "tuned")
    assert run["allocator"]["environment"] == measure.allocator()["environment"]
    assert run["noise"]["start"]["cpu_affinity"] and run["noise"]["end"]["load_average"]
    page = write_reports([run_file], tmp_path)[0].read_text()
    for column in ("first load", "first predict +RSS", "server start: imports",
                   "server start: load", "label agreement, untied rows"):
        assert column in page
    assert "defers work to the first prediction" in page  # the memory map's paged-in array


@pytest.mark.slow
@pytest.mark.skipif(PEAK_METHOD != "clear_refs-vmhwm", reason="needs Linux clear_refs")
def test_memory_mapping_pays_at_the_first_prediction(cells):
    mapped, eager = cells[("array_reader", "joblib-mmap")], cells[("array_reader", "pickle-p5")]
    assert mapped["load_peak_rss_bytes"] < 0.1 * READER_BYTES
    assert mapped["first_predict_rss_bytes"] >= 0.85 * READER_BYTES
    assert eager["load_peak_rss_bytes"] >= 0.85 * READER_BYTES
    assert eager["first_predict_rss_bytes"] < 0.1 * READER_BYTES
    assert mapped["first_predict_s"]["n"] == 2 == len(mapped["first_predict_s"]["samples"])


@pytest.mark.slow
def test_a_planted_slow_first_load_is_kept_and_paid_by_every_fresh_server(cells):
    cell = cells[("slow_first_load", "pickle-p5")]
    assert cell["load_first_s"] >= PLANTED_FIRST_LOAD_S
    assert cell["load_s"]["n"] == 2 and cell["load_warmups"] >= 2
    starts = cell["start_load_s"]
    assert starts["n"] == roundtrip.START_REPEATS
    assert starts["min"] >= PLANTED_FIRST_LOAD_S  # each new interpreter loads for the first time
    assert cell["start_modules"] == ["known_models"]
    for key in ("start_import_s", "start_first_predict_s", "start_total_s"):
        assert cell[key]["n"] == roundtrip.START_REPEATS


@pytest.mark.slow
def test_cold_loads_are_checked_cold(cells):
    cell = cells[("array_reader", "pickle-p5")]
    if cell["load_cold_status"] == "unsupported":
        assert cell["load_cold_reason"]
    else:
        assert cell["load_cold_resident_fraction"] <= measure.COLD_MAX_RESIDENT
        assert cell["load_cold_s"]["n"] == 2
