"""The cross-machine page: side by side, efficiency against each machine's calibration,
winner changes said in a sentence, and figures taken with different methods never ratioed."""

from __future__ import annotations

from persistbench.report.data import MachineResults
from persistbench.report.machines import (
    cross_machine,
    efficiency,
    winner_changes,
    write_cross_machine,
)

LINUX = {"peak_memory": "clear_refs-vmhwm", "cold_cache": "posix_fadvise-dontneed",
         "allocator": "default", "shared_memory": "pss"}
SAMPLED = {**LINUX, "peak_memory": "rss-sampled-1ms"}


def _cell(model: str, fmt: str, load_s: float, peak: int = 1000) -> dict:
    return {"cell_id": f"roundtrip/{model}/small/{fmt}", "experiment": "roundtrip",
            "model": model, "size": "small", "format": fmt, "status": "ok",
            "file_bytes": 1_000_000, "load_peak_rss_bytes": peak,
            "load_s": {"min": load_s, "median": load_s, "max": load_s, "n": 1}}


def _machine(mid: str, loads: dict, methods: dict, read_bps: float = 1e9) -> MachineResults:
    cells = [_cell(model, fmt, t) for (model, fmt), t in loads.items()]
    return MachineResults(machine={"machine_id": mid, "calibration": {"page_cache_read_bps":
                                                                          read_bps}},
                          runs=[{"path": f"{mid}.json", "started": "2026-01-01",
                                 "methods": methods}], cells=cells)


def test_efficiency_is_throughput_over_the_machines_bandwidth():
    cell = _cell("knn", "joblib", 0.004)
    # 1 MB in 4 ms = 250 MB/s against 1 GB/s of page-cache read: a quarter.
    assert efficiency(cell, "load_s", {"page_cache_read_bps": 1e9}, "page_cache_read_bps") == 0.25
    assert efficiency(cell, "load_s", None, "page_cache_read_bps") is None


def test_a_reversed_winner_is_said_in_a_sentence_and_a_near_tie_is_not():
    arm = _machine("arm", {("knn", "joblib"): 1.0, ("knn", "pickle-p5"): 1.5,
                           ("lr", "joblib"): 1.0, ("lr", "pickle-p5"): 1.02}, LINUX)
    x86 = _machine("x86", {("knn", "joblib"): 2.0, ("knn", "pickle-p5"): 1.0,
                           ("lr", "joblib"): 1.01, ("lr", "pickle-p5"): 1.0}, LINUX)
    assert winner_changes([arm, x86]) == [
        "knn (small): on arm joblib loads it faster than pickle-p5; on x86 the reverse."]


def test_side_by_side_with_efficiency_when_methods_agree():
    a = _machine("a", {("knn", "joblib"): 0.004}, LINUX, read_bps=1e9)
    b = _machine("b", {("knn", "joblib"): 0.002}, LINUX, read_bps=4e9)
    page = cross_machine([a, b])
    load = next(t for t in page.tables if t.title == "Warm load")
    assert load.columns == ["model", "size", "format", "a", "b",
                            "a: % of page-cache read", "b: % of page-cache read"]
    [row] = load.rows
    assert [n.value for n in row[3:]] == [0.004, 0.002, 0.25, 0.125]


def test_different_peak_methods_are_marked_and_not_ratioed(tmp_path):
    a = _machine("linux", {("knn", "joblib"): 0.004}, LINUX)
    b = _machine("mac", {("knn", "joblib"): 0.004}, SAMPLED)
    page = cross_machine([a, b])
    peak = next(t for t in page.tables if t.title == "Peak memory while loading")
    assert "clear_refs-vmhwm" in peak.note and "rss-sampled-1ms" in peak.note
    assert all(str(v).endswith("†") for v in peak.rows[0][3:])
    load = next(t for t in page.tables if t.title == "Warm load")
    assert "†" not in load.note and len(load.columns) == 7  # timings share the allocator
    html = write_cross_machine([a, b], tmp_path).read_text()
    assert "never as a ratio" in html and "rss-sampled-1ms" in html
    assert write_cross_machine([a], tmp_path / "one") is None
