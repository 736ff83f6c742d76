"""Optional parts of persistbench and the pip extra that installs each.

`pip install persistbench` measures pickle, joblib, cloudpickle and skops; the ONNX stack
(ONNX cells), matplotlib and jinja2 (HTML reports) and uv (fast compat environments) are
extras, so that a user who needs none of them does not download half a gigabyte. Code that
needs one asks here first and tells the user which extra to install instead of failing on an
import deep inside.
"""

from __future__ import annotations

from importlib.util import find_spec

EXTRAS = {
    "onnx": ("skl2onnx", "onnx", "onnxruntime"),
    "report": ("matplotlib", "jinja2"),
    "compat": ("uv",),
}


def missing(extra: str) -> str | None:
    """None when the extra's modules are importable; else what is missing and how to add it."""
    absent = [module for module in EXTRAS[extra] if find_spec(module) is None]
    if not absent:
        return None
    return (f"{', '.join(absent)} not installed: pip install 'persistbench[{extra}]' "
            f"(or '.[{extra}]' in a checkout)")
