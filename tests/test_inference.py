"""ONNX Runtime vs scikit-learn: fidelity arithmetic, batch handling, and real cells."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_plan
from sklearn.linear_model import LogisticRegression

from persistbench.experiments import inference
from persistbench.sources.formats import convert_to_onnx, onnx_session


def test_fidelity_finds_a_planted_difference():
    labels = np.arange(100) % 3
    proba = np.full((100, 3), 1 / 3)
    other_labels, other_proba = labels.copy(), proba.copy()
    other_labels[[5, 50, 95]] += 1  # three of a hundred disagree
    other_proba[7, 2] += 0.25
    out = inference.fidelity((labels, proba), (other_labels, other_proba))
    assert out["label_agreement"] == pytest.approx(0.97)
    assert out["proba_max_abs_diff"] == pytest.approx(0.25)
    assert "roundtrip_equal" not in out


def test_fidelity_of_a_regressor_is_the_value_drift():
    want = np.array([1.0, -2.0, 4.0])
    out = inference.fidelity((want, None), (want + np.array([0, 0.5, 0]), None))
    assert out["label_agreement"] is None and out["proba_max_abs_diff"] is None
    assert out["prediction_max_abs_diff"] == pytest.approx(0.5)
    assert out["prediction_max_rel_diff"] == pytest.approx(0.25)


def test_heldout_rows_draw_each_column_from_its_own_values():
    X = np.arange(20.0).reshape(10, 2)  # column 0 even numbers, column 1 odd ones
    rows = inference.heldout_rows(X, 1000)
    assert rows.shape == (1000, 2) and rows.dtype == np.float32
    assert set(rows[:, 0]) <= set(X[:, 0]) and set(rows[:, 1]) <= set(X[:, 1])
    docs = inference.heldout_rows(["a b c", "d e"], 50)
    assert len(docs) == 50 and set(" ".join(docs).split()) <= set("abcde")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    est = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path.write_bytes(convert_to_onnx(est, X).SerializeToString())
    return est, onnx_session(path), X


def test_latency_has_one_entry_per_runtime_method_and_batch(tiny):
    est, session, X = tiny
    entries = inference.latency(est, session, X, batch_sizes=(1, 7, 40), budget_s=0.01,
                                max_n=5)
    keys = {(e["runtime"], e["method"], e["batch_size"]) for e in entries}
    assert keys == {(r, m, b) for r in ("sklearn", "onnxruntime")
                    for m in ("predict", "predict_proba") for b in (1, 7, 40)}
    for e in entries:
        assert 1 <= e["n"] <= 5
        assert e["rows_per_s"] == pytest.approx(e["batch_size"] / e["median_s"])
        assert e["min_s"] <= e["median_s"] <= e["p90_s"] <= e["max_s"]
    with pytest.raises(ValueError, match="batch size 41"):
        inference.latency(est, session, X, batch_sizes=(41,))


def test_batches_are_the_first_rows(tiny):
    est, session, X = tiny
    seen = []
    wrapped = type("Spy", (), {"predict": lambda self, Z: seen.append(len(Z)) or est.predict(Z)})
    inference.latency(wrapped(), session, X, batch_sizes=(1, 7), budget_s=0.0, max_n=1)
    assert set(seen) == {1, 7}


def test_time_series_warms_up_then_takes_at_least_the_minimum():
    calls = []
    series = inference.time_series(lambda: calls.append(1), budget_s=10.0, max_n=7)
    assert len(series.samples) == 7 and len(calls) == 8  # one warm-up, kept apart
    spent = inference.time_series(lambda: None, budget_s=0.0, max_n=50)
    assert len(spent.samples) == inference.MIN_SAMPLES and spent.short_reason is None


def test_time_series_over_the_cells_budget_says_why_it_has_fewer_samples():
    series = inference.time_series(lambda: None, budget_s=0.0, max_n=50, hard_budget_s=1e-9)
    assert len(series.samples) == 1
    assert f"1 of {inference.MIN_SAMPLES} samples" in series.short_reason
    entry = inference.latency_entry("sklearn", "predict", 1, series)
    assert entry["short_reason"] == series.short_reason and entry["warmup_s"] >= 0


def test_time_series_after_the_budget_is_spent_takes_one_call():
    calls = []
    series = inference.time_series(lambda: calls.append(1), hard_budget_s=-1.0)
    assert len(calls) == 1 and len(series.samples) == 1 and "no warm-up" in series.short_reason


def test_fidelity_counts_ties_apart():
    proba = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.1, 0.45, 0.45], [0.9, 0.05, 0.05]])
    want = np.array([0, 2, 1, 0])
    got = np.array([1, 2, 2, 0])  # differs exactly on the two tied rows
    out = inference.fidelity((want, proba), (got, proba))
    assert out["label_agreement"] == pytest.approx(0.5)
    assert out["tied_rows"] == 2 and out["label_agreement_untied"] == 1.0


def test_cells_ok_for_a_convertible_model_unsupported_with_the_converters_message(tmp_path):
    cells = inference.plan(["logreg", "custom_code"], ["small"], ["onnx"],
                           {"repeat": 1, "seed": 0})
    results = run_plan(tmp_path / "r.json", cells, timeout_s=300)
    by_model = {c["model"]: c for c in results["cells"]}
    ok = by_model["logreg"]
    assert ok["status"] == "ok", ok.get("reason")
    assert ok["label_agreement"] > 0.99 and ok["proba_max_abs_diff"] < 1e-4
    assert ok["heldout_rows"] == inference.FIDELITY_ROWS
    assert ok["onnx_file_bytes"] > 0 and ok["convert_s"] > 0 and ok["session_create_s"] > 0
    assert ok["threads"] == {"onnxruntime_intra_op": 1, "blas": 1, "openmp": 1}
    assert len(ok["latency"]) == 2 * 2 * len(inference.BATCH_SIZES)
    bad = by_model["custom_code"]
    assert bad["status"] == "unsupported"
    assert "FunctionTransformer" in bad["reason"]


def test_fidelity_outputs_in_chunks_equal_one_batch(tiny):
    est, session, X = tiny
    from persistbench.sources.formats import FORMATS, predict

    for fmt, obj in ((FORMATS["pickle"], est), (FORMATS["onnx"], session)):
        whole, chunked = predict(fmt, obj, X), inference.predict_in_chunks(fmt, obj, X, chunk=7)
        assert np.array_equal(whole[0], chunked[0])
        np.testing.assert_allclose(whole[1], chunked[1], rtol=1e-5)  # BLAS blocking may differ


def test_a_two_tree_forest_agrees_with_onnx_on_every_untied_row(tmp_path):
    """Two fully grown trees tie wherever they disagree: a classifier with known ties."""
    from sklearn.ensemble import RandomForestClassifier

    from persistbench.sources.formats import FORMATS, predict

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    y = (X[:, 0] + rng.standard_normal(300) > 0).astype(int)
    est = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    path = tmp_path / "forest.onnx"
    path.write_bytes(convert_to_onnx(est, X).SerializeToString())
    rows = inference.heldout_rows(X, 500)
    expected = predict(FORMATS["pickle"], est, rows)
    out = inference.fidelity(expected, predict(FORMATS["onnx"], onnx_session(path), rows))
    tied = int((expected[1][:, 0] == 0.5).sum())
    assert tied > 0 and out["tied_rows"] == tied
    assert out["label_agreement_untied"] == 1.0
