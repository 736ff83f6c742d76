"""persistbench: measure how to persist a scikit-learn model, on your own machine.

From Python (a notebook): `persistbench.advise(estimator, X)`, `persistbench.run(...)` and
`persistbench.read_results(path)`, each returning one `persistbench.Results`; see
`persistbench.api`.
"""

from __future__ import annotations

from typing import Any

API = ("advise", "run", "read_results", "Results", "Interrupted")


def __getattr__(name: str) -> Any:
    """`__version__` and the Python API on first use, so `import persistbench` stays cheap
    (importlib.metadata alone costs half a second) and the CLI's children never import the
    API."""
    if name in API:
        # Imported by name: every module imports this package (for `__version__`), and an
        # import statement here would read as every module importing the API above it.
        import importlib

        return getattr(importlib.import_module("persistbench.api"), name)
    if name != "__version__":
        raise AttributeError(f"module 'persistbench' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("persistbench")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted([*globals(), *API, "__version__"])
