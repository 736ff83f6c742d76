"""The zoo trains real estimators once, into a cache keyed by what changes the fitted bytes."""

from __future__ import annotations

import pytest

from persistbench.sources.models import MODELS, UsageError, cache_key, train_into_cache
from persistbench.sources.resolve import resolve_spec


def test_zoo_covers_the_families():
    assert len(MODELS) >= 10
    tags = {t for spec in MODELS.values() for t in spec.tags}
    assert {"large-array", "custom-code", "text", "pipeline", "regressor"} <= tags


def test_cache_key_depends_on_size_and_seed():
    spec = MODELS["logreg"]
    keys = {cache_key(spec, s, seed) for s in ("small", "medium") for seed in (0, 1)}
    assert len(keys) == 4


def test_second_training_is_a_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSISTBENCH_CACHE", str(tmp_path))
    spec = MODELS["svc"]
    path = train_into_cache(spec, "small", 0)
    stamp = path.stat().st_mtime_ns
    assert train_into_cache(spec, "small", 0) == path
    assert path.stat().st_mtime_ns == stamp


def test_unknown_model_is_a_usage_error():
    with pytest.raises(UsageError, match="valid: logreg"):
        resolve_spec("nope")
