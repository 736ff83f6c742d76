"""Repeated passes: folded into one record per cell, interleaved, resumable, splittable."""

from __future__ import annotations

import pytest
from conftest import run_plan

from persistbench.experiments import roundtrip
from persistbench.results.passes import add_pass, passes_done, pool_workers, split_passes
from persistbench.results.schema import read
from persistbench.schedule.runner import RunOptions, run


def _pass(load: list[float], peak: list[int], status: str = "ok", **extra) -> dict:
    record = {"cell_id": "roundtrip/m/small/pickle", "experiment": "roundtrip", "model": "m",
              "size": "small", "format": "pickle", "status": status, "elapsed_s": 1.0}
    if status != "ok":
        return {**record, "reason": "load_step: boom"}
    return {**record,
            "load_s": {"min": min(load), "median": sorted(load)[len(load) // 2],
                       "max": max(load), "n": len(load)},
            "load_s_samples": load, "load_peak_rss_bytes": sorted(peak)[len(peak) // 2],
            "load_peak_rss_samples_bytes": peak, "file_bytes": 100, "roundtrip_equal": True,
            "latency": [{"batch": 1, "median_s": load[0], "samples_s": load}], **extra}


def test_passes_fold_into_one_record_with_per_pass_samples():
    record = None
    for load, peak in (([1.0, 2.0, 3.0], [10, 20, 30]), ([4.0, 5.0, 6.0], [40, 50, 60])):
        record = add_pass(record, _pass(load, peak))
    assert record["pass_status"] == ["ok", "ok"] and passes_done(record) == 2
    stats = record["load_s"]
    assert stats["passes"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert (stats["min"], stats["median"], stats["max"], stats["n"]) == (1.0, 3.5, 6.0, 6)
    assert stats["samples"] == record["load_s_samples"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert record["load_peak_rss_bytes_passes"] == [[10, 20, 30], [40, 50, 60]]
    assert record["load_peak_rss_bytes"] == 35 and isinstance(record["load_peak_rss_bytes"], int)
    assert record["file_bytes"] == 100 and record["file_bytes_passes"] == [[100], [100]]
    assert record["latency"][0]["median_s_passes"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert record["latency"][0]["batch"] == 1 and record["elapsed_s"] == 2.0
    assert record["status"] == "ok" and "reason" not in record


def test_a_failed_pass_marks_the_cell_and_adds_no_measures():
    record = add_pass(None, _pass([1.0, 2.0], [0, 0]))
    record = add_pass(record, _pass([], [], status="crashed"))
    record = add_pass(record, _pass([3.0, 4.0], [0, 0], roundtrip_equal=False))
    assert record["pass_status"] == ["ok", "crashed", "ok"]
    assert record["status"] == "crashed" and record["reason"].startswith("pass 2: ")
    assert record["load_s"]["passes"] == [[1.0, 2.0], [3.0, 4.0]]
    assert record["roundtrip_equal"] is False  # must hold on every pass


def test_an_unsupported_cell_keeps_its_reason():
    record = add_pass(None, _pass([], [], status="unsupported"))
    assert record["status"] == "unsupported" and record["reason"] == "load_step: boom"


def test_a_single_pass_record_is_continued():
    plain = _pass([1.0, 2.0, 3.0], [0, 0, 0])
    assert passes_done(plain) == 1 and passes_done(None) == 0
    record = add_pass(plain, _pass([4.0, 5.0, 6.0], [0, 0, 0]))
    assert record["load_s"]["passes"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert record["pass_status"] == ["ok", "ok"]


def test_split_passes_gives_two_halves_of_one_run():
    record = None
    for k in range(4):
        record = add_pass(record, _pass([k + 1.0, k + 1.5], [k, k]))
    first, second = split_passes({"cells": [record], "run": {}})
    assert first["cells"][0]["load_s"]["passes"] == [[1.0, 1.5], [2.0, 2.5]]
    assert second["cells"][0]["load_s"]["median"] == pytest.approx(3.75)
    assert second["cells"][0]["load_peak_rss_bytes_passes"] == [[2, 2], [3, 3]]


@pytest.mark.slow
def test_runs_are_interleaved_and_resume_mid_pass(tmp_path, monkeypatch):
    cells = roundtrip.plan(["logreg"], ["small"], ["pickle", "skops"], {"repeat": 1, "seed": 0})
    cells += roundtrip.plan(["logreg"], ["small"], ["joblib-mmap"], {"repeat": 1, "seed": 0})
    order: list[str] = []
    parents: list[int] = []
    from multiprocessing import forkserver

    import persistbench.schedule.runner as runner

    real = runner.run_cell

    def spy(cell, workdir, timeout_s):
        order.append(cell.cell_id.rsplit("/", 1)[1])
        parents.append(forkserver._forkserver._forkserver_pid)
        if len(order) == 4:
            raise KeyboardInterrupt
        return real(cell, workdir, timeout_s)

    monkeypatch.setattr(runner, "run_cell", spy)
    out = tmp_path / "r.json"
    options = RunOptions(output=out, timeout_s=60, calibrate=False, argv=["pytest"], runs=2)
    with pytest.raises(KeyboardInterrupt):
        run(cells, options)
    planned = [c.cell_id.rsplit("/", 1)[1] for _, c in runner._pending(
        cells, runner.ResultsFile(out, {"cells": []}), 2, seed=0)]
    assert order == planned[:4]  # pass 1 over every cell, in its order; then pass 2's
    assert sorted(order[:3]) == ["joblib-mmap", "pickle", "skops"]
    assert parents[0] == parents[1] == parents[2] != parents[3]  # a new forkserver per pass
    assert {c["cell_id"]: passes_done(c) for c in read(out)["cells"]} == {
        c.cell_id: 1 for c in cells}
    order.clear()
    monkeypatch.setattr(runner, "run_cell", real)
    done = run(cells, RunOptions(output=out, resume=True, timeout_s=60, calibrate=False,
                                 argv=["pytest"], runs=2)).data
    assert len(done["cells"]) == 3 and done["run"]["runs"] == 2
    for cell in done["cells"]:
        assert cell["pass_status"] == ["ok", "ok"], cell.get("reason")
        assert len(cell["load_s"]["passes"]) == 2 and cell["load_s"]["n"] == 2
    assert len(done["run"]["passes_finished"]) == 2 and len(done["run"]["resumed"]) == 1


def test_workers_pool_into_one_pass_that_stays_one_unit():
    """Three worker processes of one pass: their samples pooled, per-process scalars kept."""
    workers = [{"load_s": {"min": x, "median": x, "max": x + 1, "n": 2, "samples": [x, x + 1]},
                "load_s_samples": [x, x + 1], "load_first_s": 10 * x,
                "load_peak_rss_bytes": int(x), "load_peak_rss_samples_bytes": [int(x)] * 2,
                "roundtrip_equal": x != 3.0, "load_cold_status": "ok"}
               for x in (1.0, 2.0, 3.0)]
    pooled = pool_workers(workers)
    assert pooled["load_s"]["samples"] == pooled["load_s_samples"] == [1, 2, 2, 3, 3, 4]
    assert pooled["load_s"]["median"] == 2.5 and "passes" not in pooled["load_s"]
    assert pooled["load_first_s"] == 20.0 and pooled["load_first_s_samples"] == [10, 20, 30]
    assert pooled["load_peak_rss_samples_bytes"] == [1, 1, 2, 2, 3, 3]
    assert pooled["roundtrip_equal"] is False and pooled["load_cold_status"] == "ok"
    assert not [k for k in pooled if k.endswith("_passes")]
    base = {"cell_id": "c", "experiment": "roundtrip", "model": "m", "size": "small",
            "format": "pickle", "status": "ok"}
    record = add_pass(add_pass(None, {**base, **pooled}), {**base, **pooled})
    assert passes_done(record) == 2
    assert record["load_s"]["passes"] == [[1, 2, 2, 3, 3, 4]] * 2
    assert record["load_first_s_passes"] == [[10, 20, 30]] * 2


def test_a_cell_spreads_dump_and_load_over_its_workers(tmp_path):
    """A real round trip in three workers: every worker's first load is kept, fidelity once."""
    cells = roundtrip.plan(["logreg"], ["small"], ["pickle"],
                           {"repeat": 5, "seed": 0, "starts": 0, "workers": 3})
    cell = run_plan(tmp_path / "r.json", cells)["cells"][0]
    assert cell["status"] == "ok" and cell["workers"] == 3
    assert len(cell["load_first_s_samples"]) == 3 and len(cell["dump_first_s_samples"]) == 3
    assert cell["load_s"]["n"] == 6 and cell["dump_s"]["n"] == 6  # 2 of 5 each, rounded up
    assert len(cell["load_cold_s_samples"]) == 6
    assert cell["roundtrip_equal"] is True and "predict_eval_s" in cell
    steps = [o["step"] for o in cell["overhead"]]
    assert steps.count("dump_step") == 3 and steps.count("load_step") == 3


def test_each_pass_has_its_own_order_kept_on_resume(tmp_path):
    """Every cell once per pass, passes in different seeded orders, a resume keeps them."""
    from persistbench.results.schema import ResultsFile
    from persistbench.schedule.runner import _pending

    cells = roundtrip.plan(["logreg", "ridge", "svc", "mlp"], ["small"],
                           ["pickle", "joblib", "skops"], {"repeat": 1, "seed": 0})
    empty = ResultsFile(tmp_path / "r.json", {"cells": []})
    todo = _pending(cells, empty, 3, seed=7)
    orders = [[c.cell_id for p, c in todo if p == k] for k in (1, 2, 3)]
    assert [p for p, _ in todo] == [1] * 12 + [2] * 12 + [3] * 12
    assert all(sorted(o) == sorted(c.cell_id for c in cells) for o in orders)
    assert len({tuple(o) for o in orders}) == 3  # 12! orders: equal ones would be a bug
    assert [c.cell_id for _, c in _pending(cells, empty, 1, seed=7)] == [
        c.cell_id for c in cells]  # a single pass keeps the plan's order
    first_done = orders[0][:5]
    partial = ResultsFile(tmp_path / "r.json", {"cells": [
        {"cell_id": cid, "status": "ok", "pass_status": ["ok"]} for cid in first_done]})
    resumed = _pending(cells, partial, 3, seed=7)
    assert resumed == [item for item in todo
                       if not (item[0] == 1 and item[1].cell_id in first_done)]
