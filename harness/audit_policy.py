"""What a model file may import without being flagged, and why anything else is.

An allow-list, not a deny-list: a model made of scikit-learn, numpy and scipy objects in
builtin containers needs nothing else, so anything else is flagged, with a sharper reason
for the well-known ways of running code. Inside the allowed packages a few corners read or
write files or run code (numpy's file loaders and `memmap`, `scipy.io`, dataset
downloaders): those are flagged too. The list is a screen for a human, not a proof of
safety: an allowed class can still do surprising things in its `__setstate__`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ALLOWED_PACKAGES = ("sklearn", "numpy", "scipy")
ALLOWED_GLOBALS: dict[str, set[str]] = {
    "builtins": {"set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "complex",
                 "slice", "range", "int", "float", "str", "bool", "object"},
    "copyreg": {"_reconstructor", "__newobj__", "__newobj_ex__"},
    "_codecs": {"encode"},
    "codecs": {"encode"},
    "collections": {"OrderedDict", "defaultdict", "deque", "Counter"},
    "joblib.numpy_pickle": {"NumpyArrayWrapper"},
    # cloudpickle's reconstructors build functions and classes from their parts; calling
    # what they build during the load is flagged separately (a dynamic call).
    "cloudpickle.cloudpickle": {"_builtin_type", "_make_function", "_make_empty_cell",
                                "_make_cell", "_make_skeleton_class", "_make_skeleton_enum",
                                "_class_setstate", "_function_setstate", "_make_dict_keys",
                                "_make_dict_values", "_make_dict_items", "_make_typevar",
                                "subimport", "dynamic_subimport",
                                "_get_dataclass_field_type_sentinel"},
}
ALLOWED_GLOBALS["cloudpickle.cloudpickle_fast"] = ALLOWED_GLOBALS["cloudpickle.cloudpickle"]
ALLOWED_GLOBALS["cloudpickle"] = ALLOWED_GLOBALS["cloudpickle.cloudpickle"]

# Parts of the allowed packages that touch files, the network or run code.
DENIED_SUBMODULES = ("numpy.f2py", "numpy.distutils", "numpy.testing", "numpy.ctypeslib",
                     "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format",
                     "numpy.lib._datasource", "scipy.io", "scipy._lib._testutils",
                     "sklearn.datasets", "sklearn.utils._testing", "sklearn.externals")
DENIED_NAMES = {"load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt",
                "genfromtxt", "fromfile", "fromregex", "memmap", "open_memmap", "tofile",
                "DataSource", "eval", "exec", "system", "getattr"}

# Sharper reasons for the classic ways in.
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
    "locals": "interpreter internals",
    "vars": "interpreter internals",
    "breakpoint": "starts a debugger",
    "input": "reads from the terminal",
    "print": "writes to the terminal",
}
OUTSIDE = "outside the allow-list (scikit-learn, numpy, scipy, builtin containers)"


@dataclass
class Finding:
    """One thing a file would do on load that the audit does not accept."""

    kind: str  # import | dynamic-call | untrusted-type | external-data | op-domain | stream
    name: str
    reason: str
    position: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _in(module: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def classify_global(module: str, name: str, trusted: tuple[str, ...] = ()) -> str | None:
    """None when `module.name` is allowed, else why it is flagged.

    `trusted` adds the user's own modules (package prefixes) to the allow-list.
    """
    if trusted and _in(module, trusted):
        return None
    if module == "builtins" or module == "__builtin__":
        if name in ALLOWED_GLOBALS["builtins"]:
            return None
        return DANGEROUS_BUILTINS.get(name, OUTSIDE)
    if name in ALLOWED_GLOBALS.get(module, ()):
        return None
    if _in(module, ALLOWED_PACKAGES):
        if _in(module, DENIED_SUBMODULES):
            return f"{module} reads or writes files or runs code"
        if name.split(".")[-1] in DENIED_NAMES:
            return f"{name} reads or writes files or runs code"
        return None
    root = module.split(".")[0]
    return DANGEROUS.get(root, OUTSIDE)
