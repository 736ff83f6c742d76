"""`pickle.load` and `joblib.load` made slower by a fixed fraction of their own time.

Installed into an environment's `sitecustomize` by `sides.py`, so every process of that
environment (the A/B's server and its children) runs the slowed functions. The wrapper times
the real call and then busy-waits `factor` times that long: the delay is proportional to the
load, cold or warm, small or large, and spends CPU as a slower unpickler would. With factor 0
the wrapper runs and waits for nothing, so an A side with factor 0 pays the wrapper's own cost
(two clock reads and a call) exactly as the slowed B side does.

`cloudpickle.load` is the C unpickler's `load` bound when cloudpickle is imported, so it is
replaced too; every joblib format goes through `joblib.load`. skops and ONNX use neither.
"""

from __future__ import annotations

import functools
import time


def _slowed(fn, factor: float):
    clock = time.perf_counter

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            end = clock()
            until = end + (end - start) * factor
            while clock() < until:
                pass
    return wrapper


def slow_down(factor: float) -> None:
    """Replace pickle.load, cloudpickle.load and joblib.load by versions `factor` slower
    (0.05: 5 %)."""
    import pickle

    import cloudpickle
    import joblib

    pickle.load = _slowed(pickle.load, factor)
    cloudpickle.load = _slowed(cloudpickle.load, factor)
    joblib.load = _slowed(joblib.load, factor)
