"""A model whose loading is slowed down on purpose, to check that `compare` catches it.

`PERSISTBENCH_PLANTED_SLOWDOWN=1.5` makes every unpickling of the wrapped random forest
spin half as long again as the unpickling itself took, so a load of this model through any
pickle-based format becomes about 1.5x slower (a little less where decompression or file
reading, which are not stretched, take part of the time). Unset, the model loads at its
natural speed. Only tests and the regression-gate check use it, through
`--model tests.planted_slowdown:factory`; nothing here ships to users.
"""

from __future__ import annotations

import os
import pickle
import time

ENV = "PERSISTBENCH_PLANTED_SLOWDOWN"


def _restore(payload: bytes) -> SlowToLoad:
    start = time.perf_counter()
    inner = pickle.loads(payload)
    factor = float(os.environ.get(ENV) or 1.0)
    if factor > 1.0:  # spin, not sleep: a sleep this short overshoots on a busy machine
        deadline = time.perf_counter() + (factor - 1.0) * (time.perf_counter() - start)
        while time.perf_counter() < deadline:
            pass
    return SlowToLoad(inner)


class SlowToLoad:
    """Predicts with the wrapped estimator; pickles as bytes unpickled by `_restore`."""

    def __init__(self, inner):
        self.inner = inner

    def predict(self, X):
        return self.inner.predict(X)

    def predict_proba(self, X):
        return self.inner.predict_proba(X)

    def __reduce__(self):
        return _restore, (pickle.dumps(self.inner, protocol=5),)


def factory():
    from harness.models import MODELS

    est, X_eval = MODELS["random_forest"].build("small", 0)
    return SlowToLoad(est), X_eval
