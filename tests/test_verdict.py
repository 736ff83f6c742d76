"""The verdict table on small known cases: who wins, ties, margins, and what was not measured."""

from __future__ import annotations

import io

from rich.console import Console

from persistbench.report.verdict import NEEDS, render_terminal, verdict


def stats(median: float, spread: float = 0.0) -> dict:
    return {"min": median - spread, "median": median, "max": median + spread, "n": 5}


def rt(fmt: str, status: str = "ok", **measures) -> dict:
    cell = {"cell_id": f"roundtrip/m/small/{fmt}", "experiment": "roundtrip", "model": "m",
            "size": "small", "format": fmt, "status": status}
    if status != "ok":
        cell["reason"] = "dump_step: ValueError: cannot convert (caused by TypeError: x)"
    return {**cell, **measures}


def sharing(fmt: str, pss: int, processes: int = 4) -> dict:
    return {"cell_id": f"sharing/m/small/{fmt}/n{processes}", "experiment": "sharing",
            "model": "m", "size": "small", "format": fmt, "variant": f"n{processes}",
            "status": "ok", "processes": processes, "total_pss_bytes": pss}


def one(cells: list[dict]) -> dict:
    rows = verdict(cells)
    assert len(rows) == 1 and set(rows[0].answers) == set(NEEDS)
    return rows[0].answers


def test_clear_winner_has_figure_and_margin_against_the_runner_up():
    answers = one([rt("pickle", load_s=stats(1e-3, 1e-5), file_bytes=1000),
                   rt("joblib", load_s=stats(4e-3, 1e-5), file_bytes=3000),
                   rt("skops", load_s=stats(9e-3, 1e-5), file_bytes=9000)])
    size = answers["size"]
    assert size.verdict == "win" and size.winners == ("pickle",)
    assert size.figure.value == 1000 and size.margin == "3× smaller than joblib"
    serve = answers["serve"]
    assert serve.winners == ("pickle",) and serve.margin == "4× faster than joblib"
    assert "start and first prediction not measured" in serve.note


def test_close_or_overlapping_figures_are_a_tie_named_as_such():
    answers = one([rt("pickle", load_s=stats(1.00e-3, 1e-5), file_bytes=1000),
                   rt("pickle-p5", load_s=stats(1.05e-3, 1e-5), file_bytes=1000),
                   rt("joblib", load_s=stats(1.5e-3, 0.6e-3), file_bytes=5000),
                   rt("skops", load_s=stats(5e-3, 1e-5), file_bytes=9000)])
    serve = answers["serve"]
    # within 1.1x, or a sample range reaching into the winner's: three formats share the win
    assert serve.verdict == "tie" and set(serve.winners) == {"pickle", "pickle-p5", "joblib"}
    assert serve.headline().startswith("tie: ") and serve.margin.endswith("than skops")
    assert answers["size"].winners == ("pickle", "pickle-p5")


def test_fresh_interpreter_start_figures_win_over_in_process_loads():
    start = {"start_import_s": stats(0.5), "start_load_s": stats(0.01),
             "start_first_predict_s": stats(0.001)}
    answers = one([rt("pickle", load_s=stats(1e-4), **start),
                   rt("onnx", load_s=stats(1e-2), start_import_s=stats(0.1),
                      start_load_s=stats(0.01), start_first_predict_s=stats(0.001))])
    serve = answers["serve"]
    assert serve.winners == ("onnx",)  # the in-process load alone would have picked pickle
    assert abs(serve.figure.value - 0.111) < 1e-9
    assert "fresh interpreter" in serve.figure_note


def test_memory_mapped_load_is_not_ranked_on_load_time_alone():
    answers = one([rt("joblib-mmap", load_s=stats(1e-5)), rt("joblib", load_s=stats(1e-3))])
    assert answers["serve"].winners == ("joblib",)
    assert "joblib-mmap not ranked" in answers["serve"].note


def test_memory_across_processes_from_the_sharing_experiment():
    answers = one([rt("joblib", file_bytes=10), sharing("joblib-mmap", 54_000_000),
                   sharing("joblib", 210_000_000), sharing("pickle-p5", 211_000_000)])
    memory = answers["memory"]
    assert memory.winners == ("joblib-mmap",) and memory.figure_note == "PSS for 4 processes"
    assert memory.margin == "3.89× less than joblib"


def test_unmeasured_needs_name_the_command_that_measures_them():
    answers = one([rt("pickle", load_s=stats(1e-3), file_bytes=10)])
    for need in ("memory", "untrusted", "no_python"):
        assert answers[need].verdict == "not measured", need
        assert answers[need].command.startswith("persistbench run --models m --sizes small")
    assert "--experiments sharing" in answers["memory"].command


def test_safe_format_uses_the_crafted_file_outcome_and_failures_are_named():
    security = [{"cell_id": "security/payload/small/skops", "experiment": "security",
                 "model": "payload", "size": "small", "format": "skops", "status": "ok",
                 "code_executed": False}]
    answers = one([rt("pickle", load_s=stats(1e-3)),
                   rt("skops", load_s=stats(4e-3), skops_untrusted_types=["a.B"]),
                   rt("onnx", status="unsupported"), *security])
    safe = answers["untrusted"]
    assert safe.winners == ("skops",)
    assert "a crafted file ran no code" in safe.note and "trusting 1" in safe.note
    assert "4× the load time of pickle" in safe.note
    no_python = answers["no_python"]
    assert no_python.verdict == "none"
    assert no_python.note == "onnx unsupported: ValueError: cannot convert"


def test_onnx_fidelity_with_ties_and_footprint_margin():
    footprint = {"cell_id": "footprint/m/small/onnx", "experiment": "footprint", "model": "m",
                 "size": "small", "format": "onnx", "status": "ok",
                 "onnx_server": {"rss_after_predict_bytes": 30_000_000},
                 "sklearn_server": {"rss_after_predict_bytes": 120_000_000}}
    answers = one([rt("onnx", load_s=stats(1e-3), label_agreement=0.95, tied_rows=100,
                      label_agreement_untied=1.0), footprint])
    no_python = answers["no_python"]
    assert no_python.winners == ("onnx",) and no_python.figure.value == 0.95
    assert "100 rows" in no_python.note or "(100 tied)" in no_python.note
    assert "4× less than scikit-learn's" in no_python.margin


def test_the_security_payload_is_not_a_model_row_and_terminal_prints_every_need():
    cells = [rt("pickle", load_s=stats(1e-3), file_bytes=10),
             {"cell_id": "security/payload/small/pickle", "experiment": "security",
              "model": "payload", "size": "small", "format": "pickle", "status": "ok",
              "code_executed": True}]
    rows = verdict(cells)
    assert [r.model for r in rows] == ["m"]
    out = io.StringIO()
    render_terminal(rows, Console(file=out, width=250))
    printed = out.getvalue()
    for title in NEEDS.values():
        assert title in printed
    assert "pickle" in printed and "not measured" in printed


def test_figures_without_a_sample_range_still_rank():
    """asv results without samples carry min and max as None."""
    bare = {"min": None, "median": 2e-3, "max": None, "n": 1}
    answers = one([rt("pickle", load_s=bare), rt("joblib", load_s=stats(5e-3))])
    assert answers["serve"].winners == ("pickle",)
    assert answers["serve"].margin == "2.5× faster than joblib"


def test_a_difference_below_the_harness_floor_is_a_tie_never_a_ranking():
    """2× apart with tight samples would rank; below the floor it is the timer's difference."""
    def floored(median: float, floor: float) -> dict:
        return {**stats(median), "floor_s": floor}

    answers = one([rt("pickle", load_s=floored(1e-6, 2e-6)),
                   rt("joblib", load_s=floored(2e-6, 2e-6))])
    assert answers["serve"].verdict == "tie"
    answers = one([rt("pickle", load_s=floored(1e-6, 1e-7)),
                   rt("joblib", load_s=floored(2e-6, 1e-7))])
    assert answers["serve"].winners == ("pickle",)


def test_the_floor_per_protocol_is_read_from_the_cells():
    from persistbench.results.protocols import floors

    cells = [rt(f, load_s={**stats(1e-3), "floor_s": fl},
                protocols={"load_s": "warm-repeated"}) for f, fl in (("a", 1e-7), ("b", 3e-7))]
    assert floors(cells) == {"warm-repeated": 2e-7}
