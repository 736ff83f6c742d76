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
from persistbench.audit.arrays import NUMPY_DTYPE, array_layout
from persistbench.audit.budget import Budget
from persistbench.audit.opcodes import Framed, Source, StreamError, read_opcodes
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
# Allowed helpers whose first argument is the class they instantiate (`cls.__new__(cls)`):
# the object made is of that class, whatever the helper's name (joblib takes any instance
# of its wrapper for one, however it was made).
RECONSTRUCTORS = {("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
                  ("copyreg", "__newobj_ex__"), ("numpy.ma.core", "_mareconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.multiarray", "_reconstruct"),
                  ("sklearn.metrics._dist_metrics", "newObj"),
                  ("sklearn.neighbors._ball_tree", "newObj"),
                  ("sklearn.neighbors._kd_tree", "newObj")}
# `copyreg._reconstructor(cls, base, state)` calls `base.__new__` and `base.__init__`: a
# base other than these builds a value by running the base's own code.
PLAIN_BASES = {("builtins", name) for name in (
    "object", "dict", "list", "set", "frozenset", "tuple", "int", "float", "complex", "str",
    "bytes", "bytearray")} | {("__builtin__", "object")}
# Opcodes that call a method looked up on the object (`obj.append`, `.extend`, `.add`):
# attribute access of an allowed class may reach stored values (`Bunch.__getattr__`).
METHOD_LOOKUPS = {"APPEND", "APPENDS", "ADDITEMS"}
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
            if not isinstance(cls, Ref):
                self.flag("dynamic-call", f"{func}({describe(cls)})", f"{func} instantiates "
                          "a value computed while loading, not a named class", pos)
            base = args[1] if func.key == ("copyreg", "_reconstructor") and len(args) > 1 \
                else None
            if isinstance(base, Ref) and base.key not in PLAIN_BASES:
                self.use(base, CALL, pos)  # base.__new__(cls, state), base.__init__(...)
            elif base is not None and not isinstance(base, Ref):
                self.flag("dynamic-call", f"{func}(base={describe(base)})", "the base "
                          "whose constructor runs is a value computed while loading", pos)
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
        return Built(func, keep, shipped=name in SHIPPED_MAKERS,
                     module=name in ("subimport", "dynamic_subimport"))

    def check_build(self, target: Any, state: Any, pos: int) -> None:
        """BUILD calls `__setstate__` or sets attributes: only on objects made here, once,
        with no dunder names in the state (a dict, or an object of an allowed dict class
        filled by SETITEMS: a `Bunch` holding `__setstate__`)."""
        if isinstance(target, Built) and target.module:
            self.flag("build", describe(target), "BUILD changes the attributes of a module: "
                      "the globals the rest of the file (and the program) calls", pos)
            return
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
            if isinstance(part, Built) and part.items is not None:
                part = part.items
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
        """APPEND/SETITEM on anything but a container made here calls that object's method.
        SETITEM goes through the class's `__setitem__` slot; APPEND, APPENDS and ADDITEMS
        look `append`, `extend` or `add` up on the object, which `__getattr__` may answer
        with a stored value, so those are accepted on containers made here only."""
        if isinstance(target, list | SymDict):
            return
        if (isinstance(target, Built) and isinstance(target.cls, Ref) and not target.shipped
                and not target.module and opcode not in METHOD_LOOKUPS):
            return  # the __setitem__ of an allowed class (a dict subclass)
        self.flag("mutation", describe(target), f"{opcode} on {describe(target)}: calls its "
                  "append/extend/__setitem__, which is not a container made here", pos)


def _is_built_type(value: Built) -> bool:
    return (isinstance(value.func, Ref) and value.func.module in CLOUDPICKLE
            and value.func.name == "_builtin_type" and isinstance(value.args, tuple)
            and len(value.args) == 1 and value.args[0] in BUILT_TYPES)


# ------------------------------------------------------------------------ joblib arrays

def _joblib_array(wrapper: Built, src: Source, walk: PickleWalk, depth: int) -> None:
    """Read past the array bytes after a wrapper, as `NumpyArrayWrapper.read_array` does."""
    layout = array_layout(wrapper)
    walk.joblib_arrays += 1
    if layout.objects:
        walk.nested_pickles += 1
        walk_stream(src, walk, depth + 1)  # from the file, not from a frame: a fresh reader
        return
    if layout.aligned:
        src.skip(src.exact(1)[0])
    src.skip(layout.nbytes)


# ------------------------------------------------------------------------------- walk

def _items(target: Any) -> list:
    """Where SETITEM(S) on `target` is recorded: a dict's pairs, an object's items (a dict
    subclass such as `Bunch` later given as a state), or nowhere."""
    if isinstance(target, SymDict):
        return target.pairs
    if isinstance(target, Built):
        if target.items is None:
            target.items = SymDict()
        return target.items.pairs
    return []


def walk_stream(src: Source, walk: PickleWalk, depth: int = 0) -> None:
    """Follow one pickle stream up to its STOP, recording into `walk`."""
    budget = walk.budget
    if depth > 8:
        raise StreamError("pickles nested more than 8 deep")
    reader = Framed(src) if walk.joblib else src  # pickle.load's C unpickler: frames are
    stack: list[Any] = []  # only a promise of bytes to come, read in order
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

    for name, arg, pos in read_opcodes(reader, c_unpickler=not walk.joblib):
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
        elif name == "FRAME":
            if isinstance(reader, Framed):
                reader.load_frame(arg)
        elif name == "READONLY_BUFFER":
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
            _items(stack[-1]).append((key, value))
        elif name == "SETITEMS":
            items = pop_mark()
            if len(items) % 2:
                raise StreamError("odd number of items for SETITEMS")
            walk.check_mutation(top(), name, pos)
            _items(stack[-1]).extend(zip(items[::2], items[1::2], strict=True))
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
            module, attr = arg
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
