"""Which results files make a machine's report: the named ones and their same-machine
siblings, so a later run adds to the page instead of replacing it."""

from __future__ import annotations

import json

from persistbench.report.data import with_siblings
from persistbench.results.schema import SCHEMA


def test_siblings_are_results_files_of_the_same_machine_only(tmp_path):
    def results(name: str, machine: str) -> None:
        (tmp_path / name).write_text(json.dumps({"schema": SCHEMA,
                                                 "machine": {"machine_id": machine}}))

    results("run-1.json", "m1")
    results("run-2.json", "m1")
    results("compat-1.json", "m1")
    results("other.json", "m2")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "bench.json").write_text(json.dumps({"benchmarks": [], "machine_info": {}}))
    found = with_siblings([tmp_path / "run-2.json"])
    assert found[0] == tmp_path / "run-2.json"  # the named file first
    assert sorted(p.name for p in found) == ["compat-1.json", "run-1.json", "run-2.json"]
    assert with_siblings([tmp_path / "other.json"]) == [tmp_path / "other.json"]
    # a missing or foreign input is passed on unchanged, for the reader to refuse by name
    assert with_siblings([tmp_path / "nope.json"]) == [tmp_path / "nope.json"]
    assert with_siblings([tmp_path / "bench.json"]) == [tmp_path / "bench.json"]
