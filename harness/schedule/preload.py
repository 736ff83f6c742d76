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
import sklearn.dummy
import sklearn.ensemble
import sklearn.feature_extraction.text
import sklearn.linear_model
import sklearn.neighbors
import sklearn.neural_network
import sklearn.pipeline
import sklearn.preprocessing
import sklearn.svm
import skops.io  # noqa: F401
import threadpoolctl  # noqa: F401

# The harness's own modules a cell's child runs: the default experiment, and the pickle walk
# that lists the modules a file needs (`serving.modules_of`); imported in each child they
# cost about 20 ms per cell.
import persistbench.audit.walker
import persistbench.experiments.roundtrip
import persistbench.measure.phases
import persistbench.sources.models
import persistbench.sources.resolve

with contextlib.suppress(ImportError):  # the `onnx` extra; ONNX cells say when it is missing
    import onnxruntime  # noqa: F401
    import skl2onnx  # noqa: F401

# Lazy initialisations every child would otherwise repeat, done once here: scikit-learn's
# first input check runs narwhals' plugin discovery (an entry-point scan, 20-25 ms per
# child here), the C library lookup of eviction and trimming runs `ldconfig -p`, the thread
# pools' scan of loaded libraries, the installed versions in a cached model's key.
sklearn.dummy.DummyClassifier().fit([[0.0]], [0]).predict([[0.0]])
persistbench.measure.phases.libc_handle()
persistbench.experiments.roundtrip.thread_pools()
persistbench.sources.models.library_versions()
persistbench.sources.models.cache_dir()

# The preloaded libraries' objects never die: move them out of the collector's sight so the
# gc.collect() between samples costs microseconds, and forked children do not touch them.
gc.freeze()
