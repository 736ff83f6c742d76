"""persistbench: measure how to persist a scikit-learn model, on your own machine."""


def __getattr__(name: str) -> str:
    """`__version__` on first use: importlib.metadata costs half a second at every start."""
    if name != "__version__":
        raise AttributeError(f"module 'persistbench' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("persistbench")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"
