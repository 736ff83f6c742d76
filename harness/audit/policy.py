"""What a model file may import, judged against an exact, generated allow-list.

The list (`allowlist.json`, written by `python -m persistbench.audit.allowlist`) holds the
(module, qualified name) pairs that the installed scikit-learn, numpy and scipy really
pickle, each with how it is used: called while loading (`call`) or only stored as a value
(`value`). Anything else is flagged with its name; so is calling a name the list only knows
as a value. Whole packages are never allowed: their helpers delete files, import modules by
name or evaluate strings. Names are resolved as the unpickler resolves them (protocols 0-2
go through the Python 2 name mapping) before they are checked. A few callables that build
other callables are allowed only in the exact shape the libraries write (`SHAPES`).
"""

from __future__ import annotations

import _compat_pickle
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

ALLOWLIST_FILE = Path(__file__).with_name("allowlist.json")
CALL, VALUE = "call", "value"

# Reviewed exceptions: a name that builds a callable, allowed only when it wraps exactly
# one of these targets (scikit-learn's HistGradientBoosting stores
# `partial(check_array, ensure_all_finite=False, ...)` in its categorical preprocessor).
PARTIAL = ("functools", "partial")
SHAPES: dict[tuple[str, str], frozenset[tuple[str, str]]] = {
    PARTIAL: frozenset({("sklearn.utils.validation", "check_array")}),
}

# Sharper reasons for the classic ways in; everything else gets OUTSIDE.
DANGEROUS: dict[str, str] = {
    "os": "operating-system access: processes, files, environment",
    "posix": "operating-system access: processes, files, environment",
    "nt": "operating-system access: processes, files, environment",
    "subprocess": "starts processes",
    "pty": "starts processes",
    "sys": "interpreter internals",
    "importlib": "imports any module",
    "runpy": "runs Python modules",
    "code": "runs Python code",
    "codeop": "compiles Python code",
    "types": "builds code objects and functions",
    "marshal": "loads code objects",
    "pickle": "loads a nested pickle",
    "_pickle": "loads a nested pickle",
    "dill": "loads a nested pickle",
    "shutil": "copies and deletes files",
    "socket": "opens network connections",
    "ctypes": "calls native code",
    "webbrowser": "opens URLs",
    "operator": "attrgetter/methodcaller reach any attribute",
    "functools": "wraps any callable",
}
DANGEROUS_BUILTINS: dict[str, str] = {
    "eval": "evaluates a Python expression",
    "exec": "executes Python code",
    "compile": "compiles Python code",
    "open": "opens a file",
    "__import__": "imports any module",
    "getattr": "reaches any attribute of any object (getattr chains)",
    "setattr": "changes any attribute of any object",
    "delattr": "deletes attributes",
    "globals": "interpreter internals",
    "breakpoint": "starts a debugger",
}
OUTSIDE = "not in the allow-list of what scikit-learn, numpy and scipy pickle"


@dataclass
class Finding:
    """One thing a file would do on load that the audit does not accept."""

    kind: str  # import | call | dynamic-call | shape | stream | budget | polyglot | ...
    name: str
    reason: str
    position: int | None = None
    loader: str | None = None  # which loader's reading of the file this comes from

    def to_json(self) -> dict:
        return asdict(self)


@cache
def allowlist() -> dict:
    """The generated list: {"names": {module: {qualname: [uses]}}, "generated_with": ...}."""
    return json.loads(ALLOWLIST_FILE.read_text())


def resolve(module: str, name: str, protocol: int) -> tuple[str, str]:
    """The name the unpickler imports: protocols 0-2 map Python 2 names (`fix_imports`)."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return module, name


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def allowed_modules() -> frozenset[str]:
    """Modules some allowed name lives in (a cloudpickle `subimport` may import these)."""
    return frozenset(allowlist()["names"])


def classify(module: str, name: str, use: str, trusted: tuple[str, ...] = ()) -> str | None:
    """None when `module.name` may be used this way (`call` or `value`), else why not.

    `trusted` adds the user's own modules (package prefixes)."""
    if trusted and _in(module, trusted):
        return None
    if module.startswith("numpy.core."):  # numpy 1.x names; numpy 2 maps them to numpy._core
        module = "numpy._core." + module[len("numpy.core."):]
    uses = allowlist()["names"].get(module, {}).get(name)
    if uses is not None:
        if use == CALL and CALL not in uses:
            return ("called while loading, but scikit-learn, numpy and scipy only store it "
                    "as a value")
        return None
    if module == "builtins":
        return DANGEROUS_BUILTINS.get(name, OUTSIDE)
    return DANGEROUS.get(module.split(".")[0], OUTSIDE)
