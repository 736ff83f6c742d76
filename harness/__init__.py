"""persistbench: measure how to persist a scikit-learn model, on your own machine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("persistbench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
