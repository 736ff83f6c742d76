"""The results file follows its schema, and a file that does not is rejected clearly."""

from __future__ import annotations

import copy
import json

import pytest

from persistbench.results.schema import ResultsError, read, validate, write_atomic


def test_real_run_validates(quick_results):
    validate(quick_results)
    machine = quick_results["machine"]
    assert machine["packages"]["scikit-learn"]
    assert machine["cores_logical"] >= 1
    assert quick_results["run"]["peak_memory_method"]


@pytest.mark.parametrize("breakage", [
    lambda d: d["cells"][0].update(status="fine"),
    lambda d: d["cells"][0].pop("experiment"),
    lambda d: d["cells"][0]["dump_s"].pop("median"),
    lambda d: d.update(schema="persistbench/0"),
    lambda d: next(c for c in d["cells"] if c["status"] != "ok").pop("reason"),
])
def test_broken_files_are_rejected(quick_results, tmp_path, breakage):
    data = copy.deepcopy(quick_results)
    breakage(data)
    path = tmp_path / "broken.json"
    write_atomic(path, data)
    with pytest.raises(ResultsError):
        read(path)


def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "not.json"
    path.write_text("{ half")
    with pytest.raises(ResultsError, match="not a JSON results file"):
        read(path)
    with pytest.raises(ResultsError, match="no such results file"):
        read(tmp_path / "missing.json")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "x.json"
    write_atomic(path, {"a": 1})
    write_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
