"""The forkserver's preload: the libraries every child uses, imported once before it forks.

Each cell's child then starts as a fork of an interpreter that already has them, instead of
paying seconds of imports per cell. The harness's own process never imports this module:
there the imports cost seconds at the first cell for nothing, and a Ctrl-C landing in them
could be swallowed by the import machinery (the run went on and exited 0) or turned into
an ImportError of a half-initialised module (a traceback instead of a one-line message).
"""

import contextlib
import gc

import cloudpickle  # noqa: F401
import joblib  # noqa: F401
import numpy  # noqa: F401
import sklearn.decomposition
import sklearn.ensemble
import sklearn.feature_extraction.text
import sklearn.linear_model
import sklearn.neighbors
import sklearn.neural_network
import sklearn.pipeline
import sklearn.preprocessing
import sklearn.svm  # noqa: F401
import skops.io  # noqa: F401

with contextlib.suppress(ImportError):  # the `onnx` extra; ONNX cells say when it is missing
    import onnxruntime  # noqa: F401
    import skl2onnx  # noqa: F401

# The preloaded libraries' objects never die: move them out of the collector's sight so the
# gc.collect() between samples costs microseconds, and forked children do not touch them.
gc.freeze()
