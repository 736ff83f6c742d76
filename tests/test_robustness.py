"""Damaged files: every outcome is classified, and the harness survives crashes and hangs."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
from conftest import run_plan
from sklearn.linear_model import LogisticRegression

from persistbench.experiments import robustness
from persistbench.schedule.children import run_child


class Sleeps:
    """Unpickles by sleeping ten minutes: a loader that hangs."""

    def __reduce__(self):
        return (time.sleep, (600,))


class Aborts:
    """Unpickles by aborting its process: a loader that crashes."""

    def __reduce__(self):
        return (os.abort, ())


def test_corruptions_are_seeded_and_damage_the_file():
    data = bytes(range(256)) * 8
    first = list(robustness.corruptions(data, seed=7, bitflips=5))
    assert first == list(robustness.corruptions(data, seed=7, bitflips=5))
    assert first != list(robustness.corruptions(data, seed=8, bitflips=5))
    truncated = [d for kind, _, d in first if kind == "truncated"]
    flipped = [d for kind, _, d in first if kind == "bitflip"]
    assert len(flipped) == 5 and len(truncated) == len(robustness.CUT_FRACTIONS) + 1
    assert all(0 < len(d) < len(data) and data.startswith(d) for d in truncated)
    for damaged in flipped:
        diff = np.frombuffer(damaged, np.uint8) ^ np.frombuffer(data, np.uint8)
        assert len(damaged) == len(data) and int(np.unpackbits(diff).sum()) == 1


@pytest.fixture()
def loads(tmp_path):
    """A work folder with X and the intact model's reference outputs, and a way to load."""
    X = np.random.default_rng(0).standard_normal((200, 4))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    with open(tmp_path / robustness.X_FILE, "wb") as fh:
        pickle.dump(X, fh)

    def load(obj, name: str, reference: bool = False, timeout: float = 20.0):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(obj))
        args = ("pickle", str(path), str(tmp_path), reference, None, timeout)
        return robustness.classify(run_child(robustness.load_trial, args,
                                             tmp_path / f"{name}.json", timeout))

    assert load(model, "intact", reference=True)[0] == "loaded_identical"
    return model, load


def test_each_outcome_is_recognised_end_to_end(loads, tmp_path):
    model, load = loads
    assert load(model, "same")[0] == "loaded_identical"
    wrong = pickle.loads(pickle.dumps(model))
    wrong.coef_ = -wrong.coef_
    outcome, detail = load(wrong, "wrong")
    assert outcome == "silent_wrong" and "differ" in detail
    outcome, detail = load({"not": "a model"}, "dict")
    assert outcome == "clean_exception" and detail.startswith("at predict")
    outcome, detail = load(Aborts(), "aborts")
    assert outcome == "crash" and "SIGABRT" in detail
    assert robustness.last_words(tmp_path / "aborts.json").startswith("Fatal Python error")
    started = time.monotonic()
    # the stack is dumped 1 s before the kill: 5 s in, far beyond the fork and unpickling
    outcome, _ = load(Sleeps(), "sleeps", timeout=6.0)
    assert outcome == "hang" and time.monotonic() - started < 30
    assert "innermost frame" in robustness.last_words(tmp_path / "sleeps.json")


@pytest.mark.slow
def test_robustness_cells_count_every_trial(tmp_path):
    cells = robustness.plan(["logreg"], ["small"], ["pickle", "onnx"],
                            {"seed": 0, "bitflips": 4})
    results = run_plan(tmp_path / "r.json", cells, timeout_s=180)
    expected_trials = len(robustness.CUT_FRACTIONS) + 1 + 4
    for cell in results["cells"]:
        assert cell["status"] == "ok", cell.get("reason")
        assert cell["trials"] == expected_trials
        assert set(cell["outcomes"]) == set(robustness.OUTCOMES)
        assert sum(cell["outcomes"].values()) == expected_trials
        assert cell["examples"] and all(e["outcome"] in robustness.OUTCOMES
                                        for e in cell["examples"])
