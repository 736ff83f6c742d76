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


def test_the_page_opens_with_relative_speed_per_format_between_real_machines(tmp_path):
    from persistbench.report.blocks import Figure, Paragraph
    from persistbench.report.machines import relative_speed

    a = _machine("a", {("knn", "joblib"): 0.004, ("lr", "joblib"): 0.001,
                       ("knn", "pickle"): 0.002}, LINUX)
    b = _machine("b", {("knn", "joblib"): 0.002, ("lr", "joblib"): 0.0005,
                       ("knn", "pickle"): 0.004}, LINUX)
    qemu = _machine("q", {("knn", "joblib"): 0.4, ("lr", "joblib"): 0.1}, LINUX)
    qemu.machine["emulated"] = "aarch64 code on an x86 CPU (user-mode emulation, e.g. qemu)"
    # b is twice as fast with joblib on both models, half as fast with pickle
    assert relative_speed([a, b], "load_s") == {"b": {"joblib": (2.0, 2.0, 2.0, 2),
                                                      "pickle": (0.5, 0.5, 0.5, 1)}}
    page = cross_machine([a, qemu, b])
    chart, note = page.speed
    assert isinstance(chart, Figure) and isinstance(note, Paragraph)
    assert "q (emulated) is left out of every ratio: aarch64 code" in note.text
    svg = chart.svg
    assert "joblib, b: 2.00× the speed of a (geometric mean of 2 models" in svg
    assert "q (emulated)" not in svg  # no bar, no legend entry
    load = next(t for t in page.tables if t.title == "Warm load")
    assert load.columns[3:6] == ["a", "q (emulated)", "b"]
    row = next(r for r in load.rows if r[2] == "joblib")
    assert row[4].text.endswith("‡") and "emulator's figure" in row[4].detail
    assert row[7] is not None and row[7].value is None  # no efficiency for the emulated one
    html = write_cross_machine([a, qemu, b], tmp_path).read_text()
    assert html.index("Relative speed per format") < html.index("<table")


def test_no_ratio_with_one_real_machine_or_different_timing_methods():
    from persistbench.report.machines import relative_speed, speed_blocks

    a = _machine("a", {("knn", "joblib"): 0.004}, LINUX)
    qemu = _machine("q", {("knn", "joblib"): 0.4}, LINUX)
    qemu.machine["emulated"] = "s390x code on an x86 CPU"
    [only] = speed_blocks([a, qemu])
    assert only.text.startswith("No relative speed: 1 real machine(s)")
    other = _machine("b", {("knn", "joblib"): 0.002}, {**LINUX, "allocator": "jemalloc"})
    assert relative_speed([a, other], "load_s") == {}
    [note] = speed_blocks([a, other])
    assert note.text.startswith("Warm load is not compared: allocator was measured as")


def test_emulation_is_told_from_the_cpu_the_system_describes():
    from persistbench.measure.emulation import cpu_family, emulation

    intel = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n"
    graviton = "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\n"
    assert cpu_family(intel) == "x86" and cpu_family(graviton) == "arm"
    assert cpu_family("vendor_id       : IBM/S390\n") == "s390"
    assert emulation("aarch64", intel) == ("aarch64 code on an x86 CPU (user-mode "
                                           "emulation, e.g. qemu)")
    assert emulation("s390x", intel).startswith("s390x code on an x86 CPU")
    assert emulation("x86_64", intel) is None and emulation("i686", intel) is None
    assert emulation("aarch64", graviton) is None
    assert emulation("aarch64", "") is None  # the system does not say: not claimed
