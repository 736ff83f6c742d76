"""The Python API: errors are one-line exceptions, results read back exactly, the verdict
shows as HTML, an interrupt keeps what was measured, and the help reads well."""

from __future__ import annotations

import json
import pydoc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="the data extra (pandas) is not installed")

import persistbench  # noqa: E402
from persistbench.results.protocols import (  # noqa: E402
    KINDS,
    MEASURE_PROTOCOLS,
    protocol,
)

UNIT_SUFFIXES = ("_s", "_bytes", "_per_s", "_bps", "_diff")
META = {"cell_id", "experiment", "model", "size", "format", "variant", "status", "reason",
        "elapsed_s", "overhead", "pass_status"}


def _fitted():
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).standard_normal((60, 4))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), X


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


@pytest.mark.parametrize("call, says", [
    (lambda est, X, out: persistbench.advise(object(), X, output=out), "not an estimator"),
    (lambda est, X, out: persistbench.advise(est, X[:, 0], output=out), "2-D"),
    (lambda est, X, out: persistbench.advise(est, X[:0], output=out), "2-D"),
    (lambda est, X, out: persistbench.advise(est, X, formats=["pickel"], output=out),
     "unknown format pickel"),
    (lambda est, X, out: persistbench.advise(est, X, repeat=0, output=out), "repeat=0"),
    (lambda est, X, out: persistbench.advise(est, X, output=out.parent), "is a directory"),
    (lambda est, X, out: persistbench.run(models=["logreg", "nope"], output=out),
     "unknown model nope"),
    (lambda est, X, out: persistbench.run(models="logreg", profile="fast", output=out),
     "unknown profile 'fast'"),
    (lambda est, X, out: persistbench.run(models="logreg", runs=0, output=out), "runs=0"),
    (lambda est, X, out: persistbench.read_results(out), "no such results file"),
    (lambda est, X, out: persistbench.advise(lambda: 0, X, output=out), "not an estimator"),
])
def test_bad_input_is_a_one_line_value_error_never_system_exit(tmp_path, call, says):
    est, X = _fitted()
    with pytest.raises(ValueError) as caught:
        call(est, X, tmp_path / "r.json")
    assert says in _one_line(caught.value)
    assert not (tmp_path / "r.json").exists()


def test_an_existing_results_file_is_never_overwritten(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}")
    est, X = _fitted()
    with pytest.raises(ValueError) as caught:
        persistbench.advise(est, X, output=out)
    assert "exists" in _one_line(caught.value)
    assert out.read_text() == "{}"


def test_a_results_file_that_is_not_one_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError) as caught:
        persistbench.read_results(bad)
    assert "neither" in _one_line(caught.value)


def test_import_persistbench_stays_cheap_and_exports_the_api():
    code = ("import sys, persistbench; assert 'persistbench.api' not in sys.modules; "
            "assert 'numpy' not in sys.modules; "
            "from persistbench import advise, run, read_results, Results; "
            "print(advise.__module__, run.__module__, read_results.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["persistbench.api.measure"] * 2 + ["persistbench.api.results"]
    assert {"advise", "run", "read_results", "Results"} <= set(dir(persistbench))


def test_help_reads_well():
    text = pydoc.render_doc(persistbench.advise, renderer=pydoc.plaintext)
    assert "advise(estimator: 'Any', X: 'Any', *, formats: 'Sequence[str] | None' = None" \
        in text
    for part in ("Measure every persistence format", "Args:", "estimator:", "X:", "formats:",
                 "full:", "repeat:", "Returns:", "Raises:", "ValueError", "Interrupted"):
        assert part in text, part
    for fn in (persistbench.run, persistbench.read_results, persistbench.Results.to_pandas,
               persistbench.Results.report, persistbench.Results.compare):
        assert fn.__doc__ and len(fn.__doc__.split()) > 15, fn


@pytest.mark.parametrize("experiment, key, expected", [
    ("roundtrip", "load_s", "warm-repeated"),
    ("roundtrip", "load_peak_rss_bytes", "isolated-peak-memory"),
    ("roundtrip", "first_predict_s", "first-predict-after-load"),
    ("roundtrip", "load_first_s", "first-in-worker"),
    ("roundtrip", "dump_first_peak_rss_bytes", "first-in-worker"),
    ("roundtrip", "first_predict_after_first_load_s", "first-in-worker"),
    ("roundtrip", "load_cold_s", "cold-page-cache"),
    ("roundtrip", "load_cold_first_predict_s", "cold-page-cache"),
    ("roundtrip", "start_load_s", "first-load-fresh-process"),
    ("roundtrip", "start_import_s", "first-load-fresh-process"),
    ("roundtrip", "file_bytes", "deterministic"),
    ("roundtrip", "label_agreement", "fidelity"),
    ("roundtrip", "proba_max_abs_diff", "fidelity"),
    ("roundtrip", "predict_eval_s", "once"),
    ("footprint", "load_s", "first-load-fresh-process"),
    ("footprint", "onnx_file_bytes", "deterministic"),
    ("sharing", "total_pss_bytes", "fresh-servers"),
    ("inference", "latency[sklearn/predict/1].median_s", "warm-repeated"),
    ("inference", "latency[sklearn/predict/1].warmup_s", "first-in-process"),
    ("security", "file_bytes", "deterministic"),
])
def test_protocol_of_a_measure(experiment, key, expected):
    """A cell that recorded its protocols is read by them; these keys of a cell that did not
    fall back to what the harness writes for them, or to the kind of figure they are."""
    cell = {"protocols": dict(MEASURE_PROTOCOLS)}
    assert protocol(experiment, key, cell) == expected
    assert expected in KINDS


def test_protocol_of_an_older_cell_names_its_collections():
    """An older results file took in-process samples after a collection: it says so."""
    assert protocol("roundtrip", "load_s") == "collected-before-each"
    assert protocol("roundtrip", "load_s_samples", {}) == "collected-before-each"


def _walk(value, key: str):
    """The results file's own value at a tidy measure path: `a.b[label].c`, where `label`
    names a list entry by its labels (strings, counts) joined with "/", or by its index."""
    import re

    for name, label in re.findall(r"([^.\[\]]+)(?:\[([^\]]+)\])?", key):
        value = value[name]
        if label:
            value = next(item for i, item in enumerate(value) if label in (str(i), "/".join(
                str(v) for k, v in item.items() if (isinstance(v, str) or type(v) is int)
                and k != "n" and not k.endswith(UNIT_SUFFIXES))))
    return value["median"] if isinstance(value, dict) else value


def _top_level_measures(cell: dict) -> dict[str, float]:
    """Independently of the harness: every top-level number whose key names its unit."""
    out = {}
    for key, value in cell.items():
        if key in META or "samples" in key or key.endswith("_passes"):
            continue
        if not (key.endswith(UNIT_SUFFIXES) or key == "label_agreement"):
            continue
        if isinstance(value, dict) and "median" in value and "n" in value:
            if value["median"] is not None:
                out[key] = value["median"]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out


def check_round_trip(paths: list[Path]) -> int:
    """Every cell and measure of the files is a row whose median is the file's value."""
    frame = persistbench.read_results(paths).to_pandas()
    assert list(frame.columns[:11]) == ["model", "size", "format", "experiment", "measure",
                                        "protocol", "unit", "median", "interval", "n",
                                        "status"]
    cells = {}
    for path in paths:  # later files win, as in the report
        for cell in json.loads(Path(path).read_text())["cells"]:
            cells[(cell["experiment"], cell["model"], cell["size"], cell["format"],
                   cell.get("variant", ""))] = cell
    checked = 0
    seen = set()
    for row in frame.itertuples(index=False):
        cell = cells[(row.experiment, row.model, row.size, row.format, row.variant)]
        assert row.status == cell["status"]
        if pd.isna(row.measure):  # a cell that measured nothing: its status only
            continue
        assert row.median == _walk(cell, row.measure), (cell["cell_id"], row.measure)
        assert row.protocol in KINDS
        seen.add((cell["cell_id"], row.measure))
        checked += 1
    for cell in cells.values():
        for key in _top_level_measures(cell):
            assert (cell["cell_id"], key) in seen, (cell["cell_id"], key)
        assert any(cid == cell["cell_id"] for cid, _ in seen) or cell["status"] != "ok"
    return checked


def test_tidy_rows_of_known_cells():
    """A hand-made cell: every measure exactly once, with unit, n, interval and protocol; a
    cell that measured nothing keeps one row for its status."""
    from persistbench.report.tidy import COLUMNS, tidy_rows

    ok = {"cell_id": "roundtrip/m/small/pickle", "experiment": "roundtrip", "model": "m",
          "size": "small", "format": "pickle", "status": "ok",
          "load_s": {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3, "samples": [3.0, 1.0, 2.0]},
          "load_s_samples": [3.0, 1.0, 2.0], "file_bytes": 100, "load_peak_rss_bytes": 4096,
          "load_peak_rss_samples_bytes": [4096, 8192], "label_agreement": 1.0,
          "roundtrip_equal": True, "pickle_protocol": 4, "elapsed_s": 9.0,
          "latency": [{"engine": "sklearn", "batch": 1, "median_s": 0.5,
                       "rows_per_s": 2.0}]}
    bad = {"cell_id": "roundtrip/m/small/onnx", "experiment": "roundtrip", "model": "m",
           "size": "small", "format": "onnx", "status": "unsupported", "reason": "no converter"}
    rows = tidy_rows([ok, bad], "box")
    assert all(list(r) == list(COLUMNS) for r in rows)
    got = {r["measure"]: (r["median"], r["unit"], r["n"], r["interval"], r["protocol"])
           for r in rows if r["format"] == "pickle"}
    assert got == {
        "load_s": (2.0, "s", 3, (1.0, 3.0), "collected-before-each"),
        "file_bytes": (100.0, "B", 1, None, "deterministic"),
        "load_peak_rss_bytes": (4096.0, "B", 2, (4096.0, 8192.0), "isolated-peak-memory"),
        "label_agreement": (1.0, "", 1, None, "fidelity"),
        "latency[sklearn/1].median_s": (0.5, "s", 1, None, "warm-repeated"),
        "latency[sklearn/1].rows_per_s": (2.0, "1/s", 1, None, "warm-repeated"),
    }
    (failed,) = [r for r in rows if r["format"] == "onnx"]
    assert (failed["measure"], failed["status"], failed["reason"], failed["machine"]) == \
        (None, "unsupported", "no converter", "box")


@pytest.mark.slow
def test_to_pandas_round_trips_every_measure_of_real_runs(report_runs):
    """Round trips (quick profile), then sharing, inference, footprint and security."""
    assert check_round_trip(report_runs["results"]) > 200


@pytest.mark.slow
def test_advise_measures_an_estimator_and_an_interrupt_keeps_what_was_measured(
        tmp_path, monkeypatch):
    from persistbench.schedule import runner

    est, X = _fitted()
    done = persistbench.advise(est, X, formats="pickle,joblib", repeat=2,
                               output=tmp_path / "a.json", calibrate=False)
    frame = done.to_pandas()
    assert set(frame["format"]) == {"pickle", "joblib"}
    assert (frame["status"] == "ok").all()
    assert frame.loc[frame.measure == "label_agreement", "median"].tolist() == [1.0, 1.0]
    assert "<table class=\"verdict\">" in done._repr_html_()
    assert check_round_trip([tmp_path / "a.json"]) > 20
    page = done.report(tmp_path / "pages")
    assert page.is_file() and "Verdict" in page.read_text()

    real, calls = runner.run_cell, []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", interrupted_second)
    with pytest.raises(persistbench.Interrupted) as caught:
        persistbench.advise(est, X, formats=["pickle", "joblib"], repeat=1,
                            output=tmp_path / "b.json", calibrate=False)
    assert "persistbench.read_results(" in str(caught.value)
    kept = caught.value.results
    assert [c["format"] for c in kept.cells] == ["pickle"]
    assert json.loads((tmp_path / "b.json").read_text())["run"]["state"] == "interrupted"


@pytest.mark.slow
def test_rows_the_model_cannot_predict_on_are_a_one_line_error(tmp_path):
    est, _ = _fitted()
    with pytest.raises(ValueError) as caught:
        persistbench.advise(est, np.zeros((5, 3)), output=tmp_path / "r.json")
    assert "cannot predict" in _one_line(caught.value) or "columns" in str(caught.value)


@pytest.mark.slow
def test_run_then_compare_two_runs_as_the_cli_does(tmp_path, capsys):
    """`persistbench.run` plans like `persistbench run`; `.compare` is `persistbench compare`."""
    runs = [persistbench.run(models="logreg", formats=["pickle", "joblib"], repeat=2, starts=0,
                             output=tmp_path / f"{name}.json", calibrate=False)
            for name in ("a", "b")]
    assert [c["cell_id"] for c in runs[0].cells] == [
        "roundtrip/logreg/small/pickle", "roundtrip/logreg/small/joblib"]
    capsys.readouterr()
    comparison = runs[0].compare(runs[1])
    printed = capsys.readouterr().out
    cli = subprocess.run([sys.executable, "-m", "persistbench", "compare",
                          str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                         capture_output=True, text=True, check=True).stdout
    file_rows = {(r.cell_id, r.key): r.ratio for r in comparison.rows if "file_bytes" in r.key}
    assert file_rows == {("roundtrip/logreg/small/pickle", "file_bytes"): 1.0,
                         ("roundtrip/logreg/small/joblib", "file_bytes"): 1.0}
    heading = printed.splitlines()[:4]  # the rule, A = …, B = …, and how it judges
    assert heading == cli.splitlines()[:4] and heading[1] == f"A = {tmp_path / 'a.json'}"
    with pytest.raises(ValueError) as caught:
        persistbench.read_results([tmp_path / "a.json", tmp_path / "b.json"]).compare(runs[1])
    assert "one results file a side" in _one_line(caught.value)
