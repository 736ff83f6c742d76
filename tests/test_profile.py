"""`persistbench profile`: a memray capture, its flamegraph and its peak, for one cell phase."""

from __future__ import annotations

import json

import pytest

from persistbench.commands.main import main
from persistbench.commands.profile import profile
from persistbench.results.flamegraphs import find_profiles


def test_profile_of_a_dump_writes_capture_flamegraph_and_peak(quick_results, tmp_path, capsys):
    assert main(["profile", "--model", "kneighbors", "--size", "small", "--format", "pickle",
                 "--phase", "dump", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    stem = tmp_path / "kneighbors-small-pickle-dump"
    info = json.loads(stem.with_suffix(".json").read_text())
    assert info["status"] == "ok" and info["phase"] == "dump"
    # The training matrix (1000 x 10 float64) is written into one bytes object at least once.
    assert info["peak_memory_bytes"] >= 1000 * 10 * 8
    assert f"({info['peak_memory_bytes']} bytes" in out
    assert stem.with_suffix(".bin").stat().st_size > 0
    html = stem.with_suffix(".html").read_text()
    assert "memray" in html.lower() and "<html" in html.lower()
    found = find_profiles(tmp_path)
    assert list(found) == [("kneighbors", "small", "pickle", "dump")]
    assert not list(tmp_path.glob(".persistbench-profile-*"))  # scratch is removed


def test_profile_of_a_load(quick_results, tmp_path):
    info = profile("logreg", "small", "joblib", "load", tmp_path)
    assert info["status"] == "ok" and info["peak_memory_bytes"] > 0
    assert (tmp_path / info["flamegraph"]).is_file()
    assert not list(tmp_path.glob("*.joblib"))  # the loaded file does not stay behind


def test_unsupported_phase_is_recorded_and_not_linked(quick_results, tmp_path, capsys):
    assert main(["profile", "--model", "custom_code", "--format", "pickle", "--phase", "dump",
                 "--output", str(tmp_path)]) == 1
    assert "no profile: unsupported" in capsys.readouterr().err
    info = json.loads((tmp_path / "custom_code-small-pickle-dump.json").read_text())
    assert info["status"] == "unsupported" and "lambda" in info["reason"]
    assert find_profiles(tmp_path) == {}


@pytest.mark.parametrize("argv", [
    ["--model", "nope", "--format", "pickle", "--phase", "dump"],
    ["--model", "logreg", "--size", "huge", "--format", "pickle", "--phase", "dump"],
    ["--model", "logreg", "--format", "pickle", "--phase", "predict"],
    ["--model", "logreg", "--format", "nope", "--phase", "load"],
])
def test_bad_profile_arguments_exit_2(argv, tmp_path, capsys):
    try:
        code = main(["profile", *argv, "--output", str(tmp_path)])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_report_links_the_profiles_of_its_machine(quick_results, tmp_path):
    from persistbench.report.html import write_reports
    from persistbench.results.schema import write_atomic

    results = tmp_path / "run.json"
    write_atomic(results, quick_results)
    machine_id = quick_results["machine"]["machine_id"]
    info = profile("logreg", "small", "pickle", "load", tmp_path / machine_id / "profiles")
    [page] = write_reports([results], tmp_path)
    html = page.read_text()
    assert f'href="profiles/{info["flamegraph"]}"' in html
    assert f'href="profiles/{info["capture"]}"' in html
    assert (page.parent / "profiles" / info["flamegraph"]).is_file()
