"""A pickle stream read as data, the way one loader (pickle.load or joblib.load) reads it.

The walk keeps a symbolic stack (constants, containers, references to globals, "the result
of calling X") so it sees what every call's target and arguments are without resolving or
calling anything: a `getattr` chain, a name computed at load time, a call of a value built
while loading, a BUILD that changes an imported function. With `joblib=True` it also reads
the raw array bytes joblib writes after each `NumpyArrayWrapper` exactly as joblib's
reader does (dtype rebuilt and compared with what numpy itself writes, object arrays
walked as a nested pickle); with `joblib=False` those bytes are opcodes, as they are to
`pickle.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from persistbench.audit import policy as rules
from persistbench.audit.budget import Budget
from persistbench.audit.opcodes import Source, StreamError, read_opcodes
from persistbench.audit.policy import (
    CALL,
    PARTIAL,
    SHAPES,
    VALUE,
    Finding,
    allowed_modules,
    classify,
    resolve,
)
from persistbench.audit.symbols import Built, Opaque, Ref, SymDict, describe, shipped_in

JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
# reconstructors whose first argument is the class they instantiate
RECONSTRUCTORS = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
                  ("copyreg", "__newobj_ex__")}
NUMPY_DTYPE = ("numpy", "dtype")
CLOUDPICKLE = ("cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast", "cloudpickle")
# cloudpickle reconstructors that take code shipped in the file as their argument
SHIPPED_RECEIVERS = {"_function_setstate", "_class_setstate", "_make_cell", "_make_function",
                     "_make_skeleton_class"}
SHIPPED_MAKERS = {"_make_function", "_make_skeleton_class", "_make_skeleton_enum"}
# `_builtin_type(name)` returns `types.<name>`; calling these builds code, not runs it
BUILT_TYPES = {"CodeType", "FunctionType", "CellType", "ModuleType", "MappingProxyType",
               "SimpleNamespace", "MethodType"}


@dataclass
class PickleWalk:
    """What one loader's reading of the file found (nested joblib pickles add to it)."""

    loader: str = "pickle.load"
    joblib: bool = False
    trusted: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    protocol: int | None = None
    imports: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    joblib_arrays: int = 0
    nested_pickles: int = 0
    cloudpickle: bool = False
    opcodes: int = 0
    wrapper_seen: bool = False
    names: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # name -> uses
    # A pickle the harness wrote itself with its arrays out of band (to list the modules a
    # server must import): NEXT_BUFFER is an array, not a file asking for what it lacks.
    buffers_held_by_caller: bool = False
    states_checked: dict[int, int] = field(default_factory=dict)
    kept_alive: list = field(default_factory=list)  # so the ids above stay theirs

    def flag(self, kind: str, name: str, reason: str, pos: int | None) -> None:
        self.findings.append(Finding(kind, name, reason, pos, self.loader))

    def use(self, ref: Ref, use: str, pos: int | None) -> None:
        self.names.setdefault(ref.key, set()).add(use)
        text = str(ref)
        record = self.calls if use == CALL else self.imports
        if text not in record:
            record.append(text)
        if ref.key in SHAPES or ref.key == rules.GETATTR:
            return  # judged by shape where it is called
        reason = classify(ref.module, ref.name, use, self.trusted)
        if reason:
            self.flag("import" if use == VALUE else "call", text, reason, pos)

    def call(self, func: Any, args: Any, opcode: str, pos: int) -> Built:
        """Record a call the unpickler makes; returns the symbolic result."""
        if isinstance(func, Ref):
            self.use(func, rules.NEW if opcode.startswith("NEWOBJ") else CALL, pos)
            return self._call_ref(func, args, pos)
        if isinstance(func, Built) and _is_built_type(func):
            return Built(func, shipped=True)
        self.flag("dynamic-call", describe(func),
                  f"{opcode} calls a value computed while loading ({describe(func)}), not a "
                  "named global: the target is hidden from an allow-list", pos)
        return Built(func, shipped=True)

    def _call_ref(self, func: Ref, args: Any, pos: int) -> Built:
        if func.module in CLOUDPICKLE:
            self.cloudpickle = True
            return self._cloudpickle_call(func, args, pos)
        if shipped_in(args):
            self.flag("shipped-code", str(func),
                      f"code shipped in the file is passed to {func}, which may run it", pos)
        if func.key == PARTIAL:
            target = args[0] if isinstance(args, tuple) and len(args) == 1 else None
            if not (isinstance(target, Ref) and target.key in SHAPES[PARTIAL]):
                self.flag("shape", f"functools.partial({describe(target)})",
                          "functools.partial around anything but the callables scikit-learn "
                          "itself wraps", pos)
            return Built(func, args)
        if func.key == rules.GETATTR and (why := rules.getattr_refused(args, self.names)):
            self.flag("call", "builtins.getattr", why, pos)
        cls = func
        if func.key in RECONSTRUCTORS and isinstance(args, tuple) and args:
            cls = args[0]
        keep = args if func.key == NUMPY_DTYPE else None
        return Built(func, keep, cls=cls)

    def _cloudpickle_call(self, func: Ref, args: Any, pos: int) -> Built:
        args = args if isinstance(args, tuple) else ()
        name = func.name
        if name in ("subimport", "dynamic_subimport"):
            module = args[0] if args else None
            known = isinstance(module, str) and (
                module in allowed_modules()
                or any(module == t or module.startswith(t + ".") for t in self.trusted))
            if not known:
                shown = module if isinstance(module, str) else describe(module)
                self.flag("import", f"{func}({shown})",
                          "imports a module outside the allow-list", pos)
        elif name == "_make_skeleton_class":
            meta = args[0] if args else None
            bases = args[2] if len(args) > 2 else ()
            if not (isinstance(meta, Ref) and meta.key == ("builtins", "type")):
                self.flag("shipped-code", f"{func}({describe(meta)})",
                          "class built with a metaclass other than `type`: its code runs "
                          "when the class is made", pos)
            if shipped_in(bases):
                self.flag("shipped-code", str(func), "class derived from a class shipped in "
                          "the file: the base's code runs when it is made", pos)
        elif name in ("_function_setstate", "_class_setstate"):
            target = args[0] if args else None
            if not (isinstance(target, Built) and target.shipped):
                self.flag("shipped-code", f"{func}({describe(target)})",
                          "changes a function or class that is not shipped in the file "
                          "(an imported one): its code can be swapped", pos)
        elif name not in SHIPPED_RECEIVERS and shipped_in(args):
            self.flag("shipped-code", str(func),
                      f"code shipped in the file is passed to {func}, which may run it", pos)
        keep = args if name == "_builtin_type" else None
        return Built(func, keep, shipped=name in SHIPPED_MAKERS)

    def check_build(self, target: Any, state: Any, pos: int) -> None:
        """BUILD calls `__setstate__` or sets attributes: only on objects made here, once,
        with no dunder names in the state."""
        if not isinstance(target, Built) or not isinstance(target.cls, Ref):
            if not (isinstance(target, Built) and target.shipped):
                self.flag("build", describe(target), "BUILD changes an object not constructed "
                          "from an allowed class here (an imported global or a computed "
                          "value)", pos)
            return
        if target.built and not target.shipped:
            self.flag("build", str(target), "BUILD applied twice to one object: the first "
                      "can install the `__setstate__` the second calls", pos)
        target.built = True
        if refused := rules.state_reason(target.of, state):
            self.flag("build", str(target.cls), refused, pos)
        if target.of == PARTIAL:
            self._check_partial_state(target, state, pos)
            return
        for part in (state if isinstance(state, tuple) else (state,)):
            if isinstance(part, SymDict):
                # a state dict shared through the memo is read once, not once per BUILD
                # (its pairs checked so far; SETITEMS may add more in between)
                done = self.states_checked.get(id(part), 0)
                self.states_checked[id(part)] = len(part.pairs)
                self.kept_alive.append(part)
                for key, value in part.pairs[done:]:
                    if rules.behaviour_dunder(key, value):
                        self.flag("build", f"{target.cls}.{key}",
                                  f"state sets `{key}`: changes how the object behaves", pos)

    def _check_partial_state(self, target: Built, state: Any, pos: int) -> None:
        wrapped = target.args[0] if isinstance(target.args, tuple) and target.args else None
        ok = (isinstance(state, tuple) and len(state) == 4 and state[0] is wrapped
              and isinstance(state[1], tuple) and not shipped_in(state[1])
              and (state[2] is None or (isinstance(state[2], SymDict)
                   and all(isinstance(k, str) for k, _ in state[2].pairs)))
              and (state[3] is None or (isinstance(state[3], SymDict) and not state[3].pairs)))
        if not ok:
            self.flag("shape", "functools.partial state",
                      "partial's state replaces the callable scikit-learn wraps", pos)

    def check_mutation(self, target: Any, opcode: str, pos: int) -> None:
        """APPEND/SETITEM on anything but a container made here calls that object's method."""
        if isinstance(target, list | SymDict):
            return
        if isinstance(target, Built) and isinstance(target.cls, Ref) and not target.shipped:
            return  # the method of an allowed class (a dict or list subclass)
        self.flag("mutation", describe(target), f"{opcode} on {describe(target)}: calls its "
                  "append/extend/__setitem__, which is not a container made here", pos)


def _is_built_type(value: Built) -> bool:
    return (isinstance(value.func, Ref) and value.func.module in CLOUDPICKLE
            and value.func.name == "_builtin_type" and isinstance(value.args, tuple)
            and len(value.args) == 1 and value.args[0] in BUILT_TYPES)


# ------------------------------------------------------------------------ joblib arrays

WRAPPER_KEYS = 16  # joblib writes 6 or 7 (subclass, shape, order, dtype, allow_mmap, ...)
MAX_FIELDS = 4096  # fields of a structured dtype: far beyond any model's arrays

def _dtype(value: Any, depth: int = 0):
    """The dtype numpy rebuilds from a pickled one, if it is exactly what numpy writes:
    rebuilt from its parts with numpy's constructors, never by handing the file's state to
    `dtype.__setstate__` (an inconsistent state crashes numpy)."""
    import numpy as np

    if not (depth < 4 and isinstance(value, Built) and value.of == NUMPY_DTYPE
            and isinstance(value.args, tuple) and len(value.args) == 3
            and isinstance(value.args[0], str) and len(value.args[0]) <= 16
            and isinstance(value.state, tuple) and len(value.state) >= 8):
        raise StreamError("joblib array wrapper without a dtype numpy writes")
    state = value.state
    try:
        if state[3] is None:
            dtype = np.dtype(value.args[0])
            if state[1] in ("<", ">") and dtype.byteorder != "|":
                dtype = dtype.newbyteorder(state[1])
            fields = None
        else:
            fields = {}
            if isinstance(state[4], SymDict) and len(state[4].pairs) > MAX_FIELDS:
                raise StreamError(f"joblib array dtype with over {MAX_FIELDS} fields")
            for name, entry in (state[4].pairs if isinstance(state[4], SymDict) else ()):
                if not (isinstance(entry, tuple) and len(entry) == 2
                        and type(entry[1]) is int):
                    raise StreamError("joblib array dtype with a field numpy does not write")
                fields[name] = (_dtype(entry[0], depth + 1), entry[1])
            names = list(state[3])
            dtype = np.dtype({"names": names, "formats": [fields[n][0] for n in names],
                              "offsets": [fields[n][1] for n in names],
                              "itemsize": state[5]}, align=bool(state[7] & 0x80))
    except (TypeError, ValueError, KeyError) as exc:
        raise StreamError(f"joblib array wrapper with dtype {value.args[0]!r}") from exc
    _, args, expected = dtype.__reduce__()
    # all but the fields (compared above) and datetime metadata (no effect on item size)
    same = (args == value.args and len(expected) == len(state)
            and expected[:4] == state[:4] and expected[5:8] == state[5:8])
    if not same or (fields is not None and set(expected[4]) != set(fields)):
        raise StreamError(f"joblib array dtype {value.args[0]!r} with a state numpy does not "
                          "write (item size or object flag changed)")
    return dtype


def _joblib_array(wrapper: Built, src: Source, walk: PickleWalk, depth: int) -> None:
    """Read past the array bytes after a wrapper, as `NumpyArrayWrapper.read_array` does."""
    state = wrapper.state
    if not isinstance(state, SymDict) or len(state.pairs) > WRAPPER_KEYS or state.duplicated():
        raise StreamError("joblib array wrapper whose state is not one plain dict of the "
                          "keys joblib writes")
    shape = state.get("shape")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise StreamError("joblib array wrapper with an unreadable shape")
    dtype = _dtype(state.get("dtype"))
    walk.joblib_arrays += 1
    if dtype.hasobject:
        walk.nested_pickles += 1
        walk_stream(src, walk, depth + 1)
        return
    if state.get("numpy_array_alignment_bytes") is not None:
        src.skip(src.exact(1)[0])
    count = 1
    for n in shape:
        count *= n
    src.skip(count * dtype.itemsize)


# ------------------------------------------------------------------------------- walk

def walk_stream(src: Source, walk: PickleWalk, depth: int = 0) -> None:
    """Follow one pickle stream up to its STOP, recording into `walk`."""
    budget = walk.budget
    if depth > 8:
        raise StreamError("pickles nested more than 8 deep")
    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}
    protocol = 0

    def pop_mark() -> list[Any]:
        nonlocal stack
        if not metastack:
            raise StreamError("could not find MARK")
        items, stack = stack, metastack.pop()
        return items

    def pop() -> Any:
        if not stack:
            raise StreamError("unpickling stack underflow")
        return stack.pop()

    def top() -> Any:
        if not stack:
            raise StreamError("unpickling stack underflow")
        return stack[-1]

    for name, arg, pos in read_opcodes(src, c_unpickler=not walk.joblib):
        walk.opcodes += 1
        if walk.opcodes % 1024 == 0:  # no opcode costs more than a bounded scan
            if walk.opcodes > budget.opcodes:
                raise budget.exceed("opcodes", budget.opcodes)
            budget.check_time_and_memory(walk.opcodes % 16384 == 0)
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if name == "MEMOIZE":
                arg = len(memo)
            if arg < 0:
                raise StreamError("negative PUT argument")
            memo[arg] = top()
            if len(memo) > budget.memo:
                raise budget.exceed("memo entries", budget.memo)
        elif name == "PROTO":
            if arg > 5:
                raise StreamError(f"unsupported pickle protocol: {arg}")
            protocol = arg
            if walk.protocol is None:
                walk.protocol = arg
        elif name in ("FRAME", "READONLY_BUFFER"):
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
            if len(metastack) >= budget.nesting:
                raise budget.exceed("nested MARKs", budget.nesting)
            metastack.append(stack)
            stack = []
        elif name in ("LIST", "FROZENSET", "TUPLE"):
            items = pop_mark()  # before touching `stack`: pop_mark rebinds it
            stack.append(tuple(items) if name == "TUPLE" else items)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise StreamError("unpickling stack underflow")
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "DICT":
            items = pop_mark()
            if len(items) % 2:
                raise StreamError("odd number of items for DICT")
            stack.append(SymDict(list(zip(items[::2], items[1::2], strict=True))))
        elif name == "APPEND":
            value = pop()
            walk.check_mutation(top(), name, pos)
            if isinstance(stack[-1], list):
                stack[-1].append(value)
        elif name in ("APPENDS", "ADDITEMS"):
            items = pop_mark()
            walk.check_mutation(top(), name, pos)
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "SETITEM":
            value, key = pop(), pop()
            walk.check_mutation(top(), name, pos)
            if isinstance(stack[-1], SymDict):
                stack[-1].pairs.append((key, value))
        elif name == "SETITEMS":
            items = pop_mark()
            if len(items) % 2:
                raise StreamError("odd number of items for SETITEMS")
            walk.check_mutation(top(), name, pos)
            if isinstance(stack[-1], SymDict):
                stack[-1].pairs.extend(zip(items[::2], items[1::2], strict=True))
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                pop_mark()
        elif name == "DUP":
            stack.append(top())
        elif name == "POP_MARK":
            pop_mark()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise StreamError(f"memo value not found at index {arg}")
            stack.append(memo[arg])
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            ref = Ref(*resolve(module, attr, protocol))
            walk.use(ref, VALUE, pos)
            if name == "GLOBAL":
                stack.append(ref)
            else:
                stack.append(walk.call(ref, tuple(pop_mark()), name, pos))
        elif name == "STACK_GLOBAL":
            attr, module = pop(), pop()
            if not (type(module) is str and type(attr) is str):
                raise StreamError("STACK_GLOBAL requires str")
            ref = Ref(*resolve(module, attr, protocol))
            walk.use(ref, VALUE, pos)
            stack.append(ref)
        elif name in ("REDUCE", "NEWOBJ"):
            args, func = pop(), pop()
            stack.append(walk.call(func, args, name, pos))
        elif name == "NEWOBJ_EX":
            _kwargs, args, func = pop(), pop(), pop()
            stack.append(walk.call(func, args, name, pos))
        elif name == "OBJ":
            items = pop_mark()
            if not items:
                raise StreamError("OBJ without a class")
            stack.append(walk.call(items[0], tuple(items[1:]), name, pos))
        elif name == "BUILD":
            state = pop()
            target = top()
            walk.check_build(target, state, pos)
            if isinstance(target, Built) and target.of in (JOBLIB_WRAPPER, NUMPY_DTYPE):
                target.state = state
                if target.of == JOBLIB_WRAPPER:
                    walk.wrapper_seen = True
                    if walk.joblib:
                        _joblib_array(target, src, walk, depth)
        elif name in ("EXT1", "EXT2", "EXT4"):
            walk.flag("import", f"extension code {arg}", "global named through the copyreg "
                      "extension registry: resolved only at load time", pos)
            stack.append(Opaque())
        elif name in ("PERSID", "BINPERSID"):
            # without a `persistent_load`, pickle.load and joblib.load refuse it here (a
            # skops archive starts with 'P', PERSID, to pickle.load)
            raise StreamError("persistent id, which pickle.load and joblib.load refuse")
        elif name == "NEXT_BUFFER":
            if not walk.buffers_held_by_caller:
                raise StreamError("out-of-band buffer: loading needs buffers the file does "
                                  "not hold")
            stack.append(Opaque())
        else:  # the remaining opcodes push their argument (ints, floats, strings, bytes)
            stack.append(arg)
