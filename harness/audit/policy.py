"""What a model file may import, judged against an exact, generated allow-list.

The list (`allowlist.json`, written by `python -m persistbench.audit.allowlist`) holds the
(module, qualified name) pairs that the installed scikit-learn, numpy, scipy, joblib (and
pandas) really pickle, the public classes and functions of scikit-learn, numpy, scipy and
joblib that have no side effect (`SIDE_EFFECT_MODULES` and `SIDE_EFFECT_WORDS` name those
left out, and why), and the reviewed builtins, standard-library containers and joblib cache
settings of `REVIEWED_NAMES`. Each comes with how it may be used: called while loading
(`call`: its `__init__` or body runs with the file's arguments), instantiated without
running any of its code (`new`: NEWOBJ, `object.__new__` then the state) or only stored as
a value (`value`). Anything else is flagged with its name; so is a use the list does not
grant. Whole packages are never allowed: their helpers delete files, import modules by
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
CALL, NEW, VALUE = "call", "new", "value"
BOUND = "bound"  # reached by `getattr(global or instance, constant name)`

# Reviewed exceptions: a name that builds a callable, allowed only when it wraps exactly
# one of these targets (scikit-learn's HistGradientBoosting stores
# `partial(check_array, ensure_all_finite=False, ...)` in its categorical preprocessor).
PARTIAL = ("functools", "partial")
SHAPES: dict[tuple[str, str], frozenset[tuple[str, str]]] = {
    PARTIAL: frozenset({("sklearn.utils.validation", "check_array")}),
}
# `getattr(T, "name")` is how pickle writes a method of a builtin type (`str.split` as a
# tokenizer): allowed for these types and their public method names, which only compute on
# their arguments. `format`/`format_map` are left out: a format string reaches any attribute
# of its arguments.
GETATTR = ("builtins", "getattr")
GETATTR_TYPES = ("str", "bytes", "bytearray", "int", "float", "complex", "list", "tuple",
                 "dict", "set", "frozenset")
GETATTR_EXCLUDED = frozenset({"format", "format_map"})


def getattr_refused(args: object, names: dict | None = None) -> str | None:
    """Why `getattr(*args)` is refused, or None for the two shapes pickle writes: a public
    method of a builtin value type (`getattr(str, "split")`), and an attribute that the
    libraries' own pickles take the same way from an allowed global or from an instance
    made while loading (`getattr(<randint_gen>, "_entropy")`, a method). Those are listed
    as `module: {"randint_gen()._entropy": ["bound"]}`; the name must be a constant string.
    `names` (a walk's) records the shape met, for the generator."""
    import builtins

    if not (isinstance(args, tuple) and len(args) == 2 and type(args[1]) is str):
        return DANGEROUS_BUILTINS["getattr"] + ", by a constant name"
    target, name = args
    key = getattr(target, "key", None)  # a Ref: the global itself
    if key and key[0] == "builtins" and key[1] in GETATTR_TYPES:
        if (not name.startswith("_") and name not in GETATTR_EXCLUDED
                and callable(getattr(getattr(builtins, key[1]), name, None))):
            return None
        return f"getattr({key[1]}, {name!r}): not a public method of a builtin value type"
    of = key or getattr(target, "of", None)  # a global, or an instance made while loading
    if of is None:
        return DANGEROUS_BUILTINS["getattr"]
    bound = f"{of[1]}{'' if key else '()'}.{name}"
    if names is not None:
        names.setdefault((of[0], bound), set()).add(BOUND)
    if BOUND in allowlist()["names"].get(of[0], {}).get(bound, ()):
        return None
    return (f"getattr of {of[0]}.{bound}: not an attribute the libraries' own pickles take "
            "this way")


def shape_judged(key: tuple[str, str]) -> bool:
    """Names allowed only by the shape of their call, which the walk judges where it sees
    the call (a loader resolving one says nothing about its arguments)."""
    return key in SHAPES or key == GETATTR


# Reviewed by hand, added to the generated list: what each does when unpickled.
REVIEWED_NAMES: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("builtins", name): ((CALL, NEW, VALUE), "a value type: builds a value from its arguments")
    for name in ("bool", "int", "float", "complex", "str", "bytes", "bytearray", "list",
                 "tuple", "dict", "set", "frozenset", "range", "slice")
} | {
    ("builtins", "object"): ((VALUE,), "the base of every class (copyreg's reconstructor)"),
    ("builtins", "Ellipsis"): ((VALUE,), "a constant"),
    ("builtins", "NotImplemented"): ((VALUE,), "a constant"),
    ("collections", "OrderedDict"): ((CALL, NEW, VALUE), "a dict that keeps its order"),
    ("collections", "defaultdict"): ((CALL, NEW, VALUE), "a dict with a default factory, "
                                     "itself a name the list must allow"),
    ("collections", "Counter"): ((CALL, NEW, VALUE), "a dict of counts"),
    ("collections", "deque"): ((CALL, NEW, VALUE), "a list with two ends"),
    ("datetime", "date"): ((CALL, VALUE), "a date from its bytes"),
    ("datetime", "datetime"): ((CALL, VALUE), "a time stamp from its bytes"),
    ("datetime", "time"): ((CALL, VALUE), "a time of day from its bytes"),
    ("datetime", "timedelta"): ((CALL, VALUE), "a duration"),
    ("datetime", "timezone"): ((CALL, VALUE), "a fixed UTC offset"),
    ("zoneinfo", "ZoneInfo._unpickle"): ((CALL, VALUE), "a time zone by name, read from the "
                                         "system's zone database (only reads it)"),
    **{("pathlib", name): ((CALL, VALUE), "a file system path: making one reads nothing")
       for name in ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath",
                    "WindowsPath")},
    # joblib's other public names run code in parallel or touch files (SIDE_EFFECT_MODULES)
    ("joblib.memory", "Memory"): ((NEW, VALUE), "a cache's settings (`Pipeline(memory=…)`): "
                                  "an empty instance and its attributes; it touches the disk "
                                  "only when a pipeline is fitted"),
    ("joblib._store_backends", "FileSystemStoreBackend"): ((NEW, VALUE), "the folder a "
                                                           "Memory caches in, as above"),
}
# Text labels in an instance's state dict: Python reads special methods from the type, and
# these three are only ever read as text (numpy's vectorize copies `__name__` and
# `__doc__`, scipy's distributions keep their `__doc__`).
HARMLESS_DUNDERS = frozenset({"__doc__", "__name__", "__qualname__"})


def behaviour_dunder(key: object, value: object) -> bool:
    """Whether a state key names a dunder that may change how an object behaves (a
    `HARMLESS_DUNDERS` key holding text or None changes nothing)."""
    text = type(value) is str or str(getattr(value, "kind", "")).startswith(
        ("unicodestring", "string"))  # or a string too long to keep (opcodes.Large)
    if key in HARMLESS_DUNDERS and (value is None or text):
        return False
    return isinstance(key, str) and key.startswith("__") and key.endswith("__")


def state_reason(cls: tuple[str, str] | None, state: object) -> str | None:
    """Why a BUILD state is refused for a class whose `__setstate__` runs part of its state
    as code, or None (also for every other class: their states are checked by the walk).
    Such state is allowed only exactly as the library writes it: scipy's distributions
    `exec` their `_parse_arg_template`; the generated list's `exec_state` holds, per class,
    the keys and templates scipy writes."""
    checked = allowlist().get("exec_state", {}).get(f"{cls[0]}.{cls[1]}") if cls else None
    if checked is None:
        return None
    pairs = getattr(state, "pairs", None)
    if pairs is None:
        return "its __setstate__ runs code from the state, which is not a plain dict here"
    for key, value in pairs:
        if key not in checked["keys"]:
            return f"its __setstate__ runs code from the state; key {key!r} is never written"
        if key in checked["code"] and value not in checked["code"][key]:
            return (f"its __setstate__ runs `{key}` as code, and this one is not what the "
                    "library writes")
    return None


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
    "getattr": "reaches any attribute of any object (getattr chains); allowed only for a "
               "public method of a builtin value type, or an attribute the libraries' own "
               "pickles take, named by a constant",
    "setattr": "changes any attribute of any object",
    "delattr": "deletes attributes",
    "globals": "interpreter internals",
    "breakpoint": "starts a debugger",
}
OUTSIDE = ("not in the allow-list of what scikit-learn, numpy, scipy and joblib pickle or "
           "publish without side effects")
# Public names of the libraries left out of the list, and why (the generator skips them;
# `classify` gives the reason). Module prefixes first, then words of a function's name.
SIDE_EFFECT_MODULES: dict[str, str] = {
    "sklearn.datasets": "downloads, reads and writes data files (fetch_*, load_*, dump_*; "
                        "clear_data_home deletes a folder)",
    "sklearn.utils": "internal helpers (parallelism, configuration, testing): only what "
                     "scikit-learn's own pickles hold is admitted",
    "sklearn.experimental": "importing it changes scikit-learn",
    "sklearn.externals": "vendored third-party code",
    "numpy.testing": "runs tests and compiles extensions",
    "numpy.typing": "type-checker plugins",
    "numpy.f2py": "runs a compiler",
    "numpy.distutils": "runs a compiler",
    "numpy.ctypeslib": "loads native libraries",
    "numpy.lib.npyio": "reads and writes files",
    "numpy.lib.format": "reads and writes files (open_memmap)",
    "scipy.io": "reads and writes files",
    "scipy.datasets": "downloads files",
    "scipy.misc": "reads files",
    "scipy.odr": "writes report files",
    "scipy.linalg.blas": "raw BLAS routines: sizes come from the arguments",
    "scipy.linalg.lapack": "raw LAPACK routines: sizes come from the arguments",
    "scipy.linalg.cython_blas": "raw BLAS routines",
    "scipy.linalg.cython_lapack": "raw LAPACK routines",
    "joblib": "runs code in parallel, caches to disk, reads and writes files",
}
SIDE_EFFECT_WORDS: dict[str, str] = {
    **dict.fromkeys(("save", "savez", "savetxt", "savemat", "load", "loads", "loadtxt",
                     "loadmat", "dump", "dumps", "fetch", "download", "open", "read", "write",
                     "tofile", "fromfile", "fromtextfile", "fromregex", "genfromtxt", "memmap",
                     "DataSource"), "reads or writes files"),
    **dict.fromkeys(("show", "print"), "prints"),
    **dict.fromkeys(("set", "seterr", "seterrcall", "setbufsize", "seed", "register",
                     "backend", "destroy"), "changes global settings or shared objects"),
    **dict.fromkeys(("Parallel", "delayed", "parallel"), "starts worker processes"),
}
SIDE_EFFECT_NAMES: dict[str, str] = {
    **dict.fromkeys(("info", "source", "lookfor", "who"), "prints"),
    "test": "runs the test suite",
    **dict.fromkeys(("add_docstring", "add_newdoc", "add_newdoc_ufunc"),
                    "changes the documentation of shared objects"),
    **dict.fromkeys(("errstate", "printoptions", "config_context"),
                    "changes global settings while in use"),
    "LowLevelCallable": "calls a native function pointer",
    "export_graphviz": "writes a file (out_file)",
    **dict.fromkeys(("probplot", "boxcox_normplot", "yeojohnson_normplot"),
                    "calls the methods of an object it is given (plot.plot, plot.text)"),
    "as_strided": "views arbitrary memory: strides come from the arguments",
}


def side_effect(module: str, name: str) -> str | None:
    """Why a public name of the libraries is not admitted, if it is left out."""
    for prefix, reason in SIDE_EFFECT_MODULES.items():
        if _in(module, (prefix,)):
            return reason
    short = name.rpartition(".")[2]
    if short in SIDE_EFFECT_NAMES:
        return SIDE_EFFECT_NAMES[short]
    for word in short.split("_"):
        if word in SIDE_EFFECT_WORDS:
            return SIDE_EFFECT_WORDS[word]
    return None


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
            return ("called with the file's arguments while loading, but the libraries only "
                    + ("instantiate it without running its code" if NEW in uses
                       else "store it as a value"))
        if use == NEW and not {NEW, CALL} & set(uses):
            return "instantiated while loading, but the libraries only store it as a value"
        return None
    if module == "builtins":
        return DANGEROUS_BUILTINS.get(name, OUTSIDE)
    return DANGEROUS.get(module.split(".")[0]) or side_effect(module, name) or OUTSIDE
