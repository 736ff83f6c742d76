"""A pickle stream, read as data: every global it would import and every call it would make.

The walk follows the opcodes with `pickletools.genops` and keeps a symbolic stack (constants,
containers, references to globals, "the result of calling X"), so it sees what a call's
target and arguments are without resolving or calling anything. That is what makes a
`getattr` chain, an import whose name is computed at load time, or a call of a value built
during loading visible. joblib writes raw array bytes between the opcodes (right after the
BUILD of each `NumpyArrayWrapper`), and object arrays as a nested pickle: the walk skips
the bytes and audits the nested stream, so a payload hidden after an array is still found.
"""

from __future__ import annotations

import pickletools
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from harness.audit_policy import Finding, classify_global

SKIP_CHUNK = 1 << 20
JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
CLOUDPICKLE_MODULES = ("cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast", "cloudpickle")
# What cloudpickle's `_builtin_type(name)` may hand back to be called: constructors of code,
# functions and cells. Building those is not running them.
CLOUDPICKLE_BUILT_TYPES = {"CodeType", "FunctionType", "CellType", "MethodType", "ModuleType",
                           "MappingProxyType", "SimpleNamespace", "ClassType"}
_DTYPE_CODE = re.compile(r"^[?a-zA-Z][0-9]*(\[[0-9a-zA-Z]+\])?$")


class StreamError(Exception):
    """The stream cannot be followed any further (corrupt, truncated, or not a pickle)."""


@dataclass(eq=False)
class Ref:
    """A global the unpickler would import: `module.name`."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Built:
    """The value an unpickler gets by calling `func(*args)` (REDUCE, NEWOBJ, INST, OBJ)."""

    func: Any
    args: Any
    state: Any = None

    def __str__(self) -> str:
        return f"{describe(self.func)}(…)"


class Opaque:
    """A value whose content the walk does not model (buffers, persistent ids, extensions)."""

    def __str__(self) -> str:
        return "<opaque>"


class SymDict:
    """A dict with possibly unhashable symbolic keys: kept as pairs."""

    def __init__(self, pairs: list | None = None):
        self.pairs = pairs or []

    def get(self, key: str, default=None):
        for k, v in self.pairs:
            if isinstance(k, str) and k == key:
                return v
        return default


class _Mark:
    pass


def describe(value: Any) -> str:
    if isinstance(value, Ref | Built | Opaque):
        return str(value)
    return type(value).__name__


@dataclass
class PickleWalk:
    """What one walk found; nested streams (joblib object arrays) add to the same record."""

    protocol: int | None = None
    imports: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    joblib_arrays: int = 0
    nested_pickles: int = 0
    cloudpickle: bool = False
    opcodes: int = 0
    trusted: tuple[str, ...] = ()

    def add_import(self, ref: Ref, pos: int | None) -> None:
        text = str(ref)
        if text not in self.imports:
            self.imports.append(text)
        if ref.module in CLOUDPICKLE_MODULES:
            self.cloudpickle = True
        reason = classify_global(ref.module, ref.name, self.trusted)
        if reason:
            self.findings.append(Finding("import", text, reason, pos))

    def add_call(self, func: Any, args: Any, kind: str, pos: int | None) -> None:
        if isinstance(func, Ref):
            text = str(func)
            if text not in self.calls:
                self.calls.append(text)
            self._check_subimport(func, args, pos)
            return
        if _is_cloudpickle_type(func):
            return
        self.findings.append(Finding(
            "dynamic-call", f"{describe(func)}",
            f"{kind} calls a value computed while loading ({describe(func)}), not a named "
            "global: the target is hidden from an import allow-list", pos))

    def _check_subimport(self, func: Ref, args: Any, pos: int | None) -> None:
        """cloudpickle's `subimport(name)` imports a module: audit the module it names."""
        if func.module not in CLOUDPICKLE_MODULES or func.name not in ("subimport",
                                                                        "dynamic_subimport"):
            return
        name = args[0] if isinstance(args, tuple) and args else None
        if not isinstance(name, str):
            self.findings.append(Finding("import", f"{func}(?)",
                                         "imports a module whose name is computed", pos))
            return
        head, _, tail = name.rpartition(".")
        reason = classify_global(head or name, tail if head else "", self.trusted)
        if reason:
            self.findings.append(Finding("import", name, f"module imported by {func}: {reason}",
                                         pos))


def _is_cloudpickle_type(func: Any) -> bool:
    return (isinstance(func, Built) and isinstance(func.func, Ref)
            and func.func.module in CLOUDPICKLE_MODULES and func.func.name == "_builtin_type"
            and isinstance(func.args, tuple) and len(func.args) == 1
            and func.args[0] in CLOUDPICKLE_BUILT_TYPES)


def _skip(stream: BinaryIO, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, SKIP_CHUNK))
        if not chunk:
            raise StreamError("file ends inside a joblib array")
        count -= len(chunk)


def _dtype_of(value: Any) -> tuple[int, bool]:
    """(itemsize, holds Python objects) of a pickled numpy dtype, computed from its data."""
    import numpy as np

    if not (isinstance(value, Built) and isinstance(value.args, tuple) and value.args
            and isinstance(value.args[0], str) and _DTYPE_CODE.match(value.args[0])):
        raise StreamError("joblib array wrapper without a readable dtype")
    try:
        base = np.dtype(value.args[0])  # a type code string parsed by numpy, nothing called
    except TypeError as exc:
        raise StreamError(f"joblib array wrapper with dtype {value.args[0]!r}") from exc
    state = value.state if isinstance(value.state, tuple) else ()
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    itemsize = elsize if elsize > 0 else base.itemsize
    return itemsize, bool(base.hasobject or flags & 1)


def _skip_joblib_array(wrapper: Built, stream: BinaryIO, walk: PickleWalk, depth: int) -> None:
    """Step over the array bytes joblib wrote after the wrapper, as joblib's reader does."""
    state = wrapper.state
    if not isinstance(state, SymDict):
        raise StreamError("joblib array wrapper without a state")
    shape = state.get("shape")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise StreamError("joblib array wrapper with an unreadable shape")
    itemsize, has_object = _dtype_of(state.get("dtype"))
    walk.joblib_arrays += 1
    if has_object:
        walk.nested_pickles += 1
        walk_stream(stream, walk, depth + 1)
        return
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = stream.read(1)
        if not padding:
            raise StreamError("file ends before a joblib array")
        _skip(stream, padding[0])
    count = 1
    for n in shape:
        count *= n
    _skip(stream, count * itemsize)


def walk_stream(stream: BinaryIO, walk: PickleWalk, depth: int = 0) -> None:
    """Follow one pickle stream up to its STOP, recording into `walk`."""
    if depth > 8:
        raise StreamError("pickles nested more than 8 deep")
    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        nonlocal stack
        if not metastack:
            raise StreamError("MARK expected on the stack")
        items, stack = stack, metastack.pop()
        return items

    def pop() -> Any:
        if not stack:
            raise StreamError("pickle stack underflow")
        return stack.pop()

    try:
        for op, arg, pos in pickletools.genops(stream):
            walk.opcodes += 1
            name = op.name
            if name == "PROTO":
                if walk.protocol is None:
                    walk.protocol = arg
            elif name == "FRAME" or name == "READONLY_BUFFER":
                pass
            elif name == "STOP":
                pop()
                return
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
            elif name in ("EMPTY_LIST", "EMPTY_SET"):
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_DICT":
                stack.append(SymDict())
            elif name == "MARK":
                metastack.append(stack)
                stack = []
            elif name in ("LIST", "FROZENSET", "TUPLE"):
                items = pop_mark()  # before touching `stack`: pop_mark rebinds it
                stack.append(tuple(items) if name == "TUPLE" else items)
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise StreamError("pickle stack underflow")
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name == "DICT":
                items = pop_mark()
                stack.append(SymDict(list(zip(items[::2], items[1::2], strict=False))))
            elif name == "APPEND":
                value = pop()
                if stack and isinstance(stack[-1], list):
                    stack[-1].append(value)
            elif name in ("APPENDS", "ADDITEMS"):
                items = pop_mark()
                if stack and isinstance(stack[-1], list):
                    stack[-1].extend(items)
            elif name == "SETITEM":
                value, key = pop(), pop()
                if stack and isinstance(stack[-1], SymDict):
                    stack[-1].pairs.append((key, value))
            elif name == "SETITEMS":
                items = pop_mark()
                if stack and isinstance(stack[-1], SymDict):
                    stack[-1].pairs.extend(zip(items[::2], items[1::2], strict=False))
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark()
            elif name == "DUP":
                stack.append(stack[-1] if stack else Opaque())
            elif name == "POP_MARK":
                pop_mark()
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise StreamError(f"memo key {arg} read before it was written")
                stack.append(memo[arg])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1] if stack else Opaque()
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else Opaque()
            elif name == "GLOBAL" or name == "INST":
                module, _, attr = str(arg).partition(" ")
                ref = Ref(module, attr)
                walk.add_import(ref, pos)
                if name == "GLOBAL":
                    stack.append(ref)
                else:
                    args = tuple(pop_mark())
                    walk.add_call(ref, args, name, pos)
                    stack.append(Built(ref, args))
            elif name == "STACK_GLOBAL":
                attr, module = pop(), pop()
                if isinstance(module, str) and isinstance(attr, str):
                    ref = Ref(module, attr)
                    walk.add_import(ref, pos)
                    stack.append(ref)
                else:
                    walk.findings.append(Finding(
                        "import", f"{describe(module)}.{describe(attr)}",
                        "STACK_GLOBAL with a module or name computed while loading", pos))
                    stack.append(Opaque())
            elif name in ("REDUCE", "NEWOBJ"):
                args, func = pop(), pop()
                walk.add_call(func, args, name, pos)
                stack.append(Built(func, args))
            elif name == "NEWOBJ_EX":
                _kwargs, args, func = pop(), pop(), pop()
                walk.add_call(func, args, name, pos)
                stack.append(Built(func, args))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise StreamError("OBJ without a class")
                walk.add_call(items[0], tuple(items[1:]), name, pos)
                stack.append(Built(items[0], tuple(items[1:])))
            elif name == "BUILD":
                state = pop()
                target = stack[-1] if stack else None
                if isinstance(target, Built):
                    target.state = state
                    if str(target.func) == JOBLIB_WRAPPER:
                        _skip_joblib_array(target, stream, walk, depth)
            elif name in ("EXT1", "EXT2", "EXT4"):
                walk.findings.append(Finding("import", f"extension code {arg}",
                                             "global named through the copyreg extension "
                                             "registry: resolved only at load time", pos))
                stack.append(Opaque())
            elif name in ("PERSID", "BINPERSID"):
                if name == "BINPERSID":
                    pop()
                walk.findings.append(Finding("import", "persistent id",
                                             "persistent id: its meaning is defined by the "
                                             "loading program, not by the file", pos))
                stack.append(Opaque())
            elif name == "NEXT_BUFFER":
                stack.append(Opaque())
            elif isinstance(arg, bytes | bytearray):
                stack.append(b"")  # array payloads: their content never matters here
            else:  # the remaining opcodes push their argument (ints, floats, strings)
                stack.append(arg)
    except StreamError:
        raise
    except (ValueError, EOFError, OSError, IndexError, KeyError, TypeError) as exc:
        text = f"{type(exc).__name__}: {exc}"
        if "exhausted" in text or "remain" in text or isinstance(exc, EOFError):
            text += " (truncated file?)"
        raise StreamError(text) from exc
    raise StreamError("pickle stream ends without STOP (truncated?)")
