"""The public classes and functions of scikit-learn, numpy, scipy and joblib, for the
allow-list: what a fitted estimator can reference beyond what fitted defaults pickle (a
`score_func=chi2`, a kernel sum, `func=numpy.expm1`, a selector).

Only public modules are walked (no part of the name starting with `_`, no tests), and only
names each module publishes (`__all__`, else names without `_`) that pickle would write as a
global: the object reached through its own `__module__` and `__qualname__` is the object
itself. Left out, with the reason `policy.side_effect` gives: modules and names that read or
write files, download, start processes, run compilers or change global settings. Admitted:

- functions (ufuncs included) as `value`: a loader only stores them; what calls them later
  passes them arguments from the same file, and none of them reaches outside its arguments;
- classes as `value`, and as `new` when unpickling one runs none of its own code: its
  `__new__` is `object.__new__` (NEWOBJ makes an empty instance) and its `__setstate__` is
  absent (the state becomes its `__dict__`) or one of `REVIEWED_SETSTATE`. Exceptions,
  classes with their own `__reduce__` and classes with a `__del__` (it would run on the
  file's state) stay values. Running `__init__` with the file's
  arguments (`call`) is granted only to what the libraries' own pickles do (the generator's
  runs), never from the API alone.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
import warnings
from collections.abc import Iterator

from persistbench.audit.policy import NEW, VALUE, side_effect

PACKAGES = ("sklearn", "numpy", "scipy", "joblib")
SKIPPED_PARTS = ("tests", "test", "conftest", "externals", "testing")
# `__setstate__` implementations read and found to only restore attributes and arrays
# (checked versions: scikit-learn 1.9, numpy 2.4, scipy 1.17).
REVIEWED_SETSTATE = {
    "sklearn.base.BaseEstimator.__setstate__": "version check, then the attribute dict",
    "sklearn.isotonic.IsotonicRegression.__setstate__": "rebuilds its interpolating function "
                                                         "from its fitted arrays",
    "numpy.polynomial._polybase.ABCPolyBase.__setstate__": "the coefficients and domain",
}


def _public_modules(package: str) -> Iterator[types.ModuleType]:
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") or p in SKIPPED_PARTS for p in parts):
            continue
        if side_effect(info.name, ""):
            continue  # a whole module left out: not even imported
        try:
            yield importlib.import_module(info.name)
        except BaseException:  # an optional dependency missing (pytest.importorskip)
            continue


def _resolves(module: str, qualname: str, obj: object) -> bool:
    """Whether pickle's `find_class(module, qualname)` gives back `obj` itself."""
    try:
        found: object = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return False
    return found is obj


def _setstate_reviewed(cls: type) -> bool:
    setstate = getattr(cls, "__setstate__", None)
    if setstate is None:
        return True
    owner = getattr(setstate, "__module__", None)
    return f"{owner}.{getattr(setstate, '__qualname__', '')}" in REVIEWED_SETSTATE


def _uses(obj: object) -> tuple[str, ...]:
    if not isinstance(obj, type):
        return (VALUE,)
    own_pickling = (obj.__reduce_ex__ is not object.__reduce_ex__
                    or obj.__reduce__ is not object.__reduce__)
    finalizer = any("__del__" in vars(c) for c in obj.__mro__)  # runs on the file's state
    if (issubclass(obj, BaseException) or own_pickling or obj.__new__ is not object.__new__
            or finalizer or not _setstate_reviewed(obj)):
        return (VALUE,)
    return (NEW, VALUE)


def public_names() -> tuple[dict[tuple[str, str], tuple[str, ...]], dict[str, str]]:
    """({(module, qualname): uses}, {"module.name": why left out}) over the four packages."""
    import numpy as np

    warnings.simplefilter("ignore")
    admitted: dict[tuple[str, str], tuple[str, ...]] = {}
    left_out: dict[str, str] = {}
    for package in PACKAGES:
        for module in _public_modules(package):
            published = getattr(module, "__all__", None) or [
                n for n in dir(module) if not n.startswith("_")]
            for name in published:
                obj = getattr(module, name, None)
                if isinstance(obj, types.ModuleType) or not callable(obj):
                    continue
                if isinstance(obj, np.ufunc):
                    where, qualname = "numpy", obj.__name__
                else:
                    where = getattr(obj, "__module__", None)
                    qualname = getattr(obj, "__qualname__", None)
                if not (isinstance(where, str) and isinstance(qualname, str)
                        and where.split(".")[0] == package
                        and _resolves(where, qualname, obj)):
                    continue
                reason = side_effect(module.__name__, name) or side_effect(where, qualname)
                if reason:
                    left_out[f"{where}.{qualname}"] = reason
                    continue
                admitted[(where, qualname)] = _uses(obj)
    return admitted, left_out
