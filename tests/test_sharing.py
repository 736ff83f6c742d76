"""The sharing machinery on a case whose answer is known: one 200 MB array, four servers."""

from __future__ import annotations

import sys

import joblib
import numpy as np
import pytest

from persistbench.experiments import serving, sharing
from persistbench.experiments.serving import save_input

ARRAY_BYTES = 200 * 2**20
HOLDER = '''
import numpy as np


class Holder:
    """A plain object holding one array; predicting reads every page of it."""

    def __init__(self, array):
        self.array = array

    def predict(self, X):
        return np.full(len(X), float(self.array.sum()))
'''


@pytest.fixture(scope="module")
def holder_file(tmp_path_factory):
    """A joblib file of a plain object with a 200 MB array, importable by fresh interpreters."""
    where = tmp_path_factory.mktemp("holder")
    (where / "holder_mod.py").write_text(HOLDER)
    sys.path.insert(0, str(where))
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", str(where))
    try:
        import holder_mod

        obj = holder_mod.Holder(np.ones(ARRAY_BYTES // 8))
        path = where / "holder.joblib"
        joblib.dump(obj, path)
        rows = save_input(np.zeros((3, 2)), where / "rows")
        modules = serving.modules_of(obj)
        yield path, rows, modules
    finally:
        mp.undo()
        sys.path.remove(str(where))


@pytest.mark.parametrize(("fmt", "low", "high"), [("joblib-mmap", 0.8, 1.4),
                                                  ("joblib", 3.6, 4.5)])
@pytest.mark.slow
def test_four_servers_share_one_mapped_copy(holder_file, tmp_path, fmt, low, high):
    path, rows, modules = holder_file
    out = sharing.measure_sharing(fmt, path, rows, [*modules, "joblib"], 4, tmp_path)

    assert out["processes"] == 4 and len(out["per_process"]) == 4
    ratio = out["model_pss_bytes"] / ARRAY_BYTES
    assert low < ratio < high, ratio
    assert out["total_pss_bytes"] == sum(p["pss_bytes"] for p in out["per_process"])
    assert out["shared_bytes"] == out["total_rss_bytes"] - out["total_uss_bytes"]
    assert out["load_s"]["n"] == 4
    if fmt == "joblib-mmap":  # every server maps the same pages: each RSS holds the array
        assert all(p["rss_bytes"] - out["baseline_rss_bytes"] > 0.9 * ARRAY_BYTES
                   for p in out["per_process"])
        assert out["model_uss_bytes"] < 0.2 * ARRAY_BYTES


def test_modules_of_names_what_unpickling_imports():
    from sklearn.linear_model import LogisticRegression

    est = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    assert "sklearn.linear_model._logistic" in serving.modules_of(est)


def test_plan_one_cell_per_sharing_format_with_process_count():
    cells = sharing.plan(["logreg"], ["small"], ["pickle", "joblib", "joblib-mmap", "pickle-p5"],
                         {"processes": 3})
    assert [c.format for c in cells] == ["joblib-mmap", "joblib", "pickle-p5"]
    assert {c.cell_id.split("/")[-1] for c in cells} == {"n3"}


def test_a_dead_server_is_an_error_with_its_message(tmp_path):
    rows = save_input(np.zeros((1, 2)), tmp_path / "rows")
    missing = tmp_path / "missing.joblib"
    with pytest.raises(RuntimeError, match="FileNotFoundError"):
        sharing.measure_sharing("joblib", missing, rows, [], 1, tmp_path)
