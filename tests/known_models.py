"""Models whose persistence behaviour is known in advance, for checking the machinery.

They are plain objects (not scikit-learn estimators) so the expected numbers follow from
their construction: one array of a known size, or a loader that misbehaves on purpose.
"""

from __future__ import annotations

import os
import time

import numpy as np

ARRAY_BYTES = 200 * 2**20


class ArrayHolder:
    """Holds one big float64 array; predicting reads a few of its values."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def predict(self, X):
        return np.asarray(X)[:, 0] * self.array[:1000].sum()


def array_holder():
    rng = np.random.default_rng(0)
    return ArrayHolder(rng.standard_normal(ARRAY_BYTES // 8)), np.ones((4, 2))


class Misbehaving:
    """Loads badly in a chosen way: raises, hangs, kills its own process, or hoards memory.

    Every pickling bumps a generation, so the copy in the model cache (generation 1) loads
    fine and only the file a format wrote from it (generation 2) misbehaves when loaded.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.generation = 0

    def predict(self, X):
        return np.zeros(len(X))

    def __getstate__(self):
        return {**self.__dict__, "generation": self.generation + 1}

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.generation < 2:
            return
        if self.mode == "raise":
            raise RuntimeError("planted failure while loading")
        if self.mode == "hang":
            time.sleep(3600)
        if self.mode == "abort":
            os.abort()
        if self.mode == "hoard":  # reserve 90 % of the machine, untouched: harmless uncapped
            import psutil

            np.empty(int(0.9 * psutil.virtual_memory().total) // 8)


def raises():
    return Misbehaving("raise"), np.ones((3, 2))


def hangs():
    return Misbehaving("hang"), np.ones((3, 2))


def aborts():
    return Misbehaving("abort"), np.ones((3, 2))


def hoards():
    return Misbehaving("hoard"), np.ones((3, 2))


READER_BYTES = 64 * 2**20


class ArrayReader(ArrayHolder):
    """Predicting reads the whole array: a memory-mapped copy is paged in by `predict`."""

    def predict(self, X):
        return np.asarray(X)[:, 0] * float(self.array.sum())


def array_reader():
    rng = np.random.default_rng(0)
    return ArrayReader(rng.standard_normal(READER_BYTES // 8)), np.ones((4, 2))


PLANTED_FIRST_LOAD_S = 0.5
_loaded_in_this_process = False


class SlowFirstLoad:
    """The first unpickling in a process sleeps (as a lazy import or a JIT would cost);
    later ones are instant. Generation 1 (the model cache's copy) never sleeps."""

    def __init__(self):
        self.generation = 0

    def predict(self, X):
        return np.zeros(len(X))

    def __getstate__(self):
        return {"generation": self.generation + 1}

    def __setstate__(self, state):
        global _loaded_in_this_process
        self.__dict__.update(state)
        if self.generation >= 2 and not _loaded_in_this_process:
            _loaded_in_this_process = True
            time.sleep(PLANTED_FIRST_LOAD_S)


def slow_first_load():
    return SlowFirstLoad(), np.ones((3, 2))
