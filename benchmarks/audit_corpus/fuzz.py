"""Fuzzing the audit's reader against the real unpicklers: whatever the loader resolves,
the walk must have seen (or flagged the point where it could not follow).

    python -m benchmarks.audit_corpus.fuzz [--streams 2000] [--seed 0]

Streams are benign joblib and pickle files (protocols 2-5, arrays of several dtypes,
object arrays, aligned arrays) mutated the ways a reader can be thrown out of step: a FRAME
inserted at a random byte with a random length (around array wrappers, across arguments,
nested), a byte changed, a run of bytes dropped or repeated. Each stream is loaded by
joblib's unpickler (the pure-Python one, with its own array reading) and by `pickle.load`
(the C unpickler) in a child process whose `find_class` records every name asked for and
refuses the ones the allow-list does not hold, so nothing outside it is ever imported or
called. The parent walks the same bytes with the audit's reader (joblib's reading and
pickle's) and compares.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from persistbench.audit.budget import Budget, BudgetExceeded
from persistbench.audit.opcodes import Source, StreamError
from persistbench.audit.policy import VALUE, classify, resolve
from persistbench.audit.walker import PickleWalk, walk_stream

CHILD_TIMEOUT_S = 300
# allowed names no base stream uses: a mutation that places one where only a reader in step
# with the loader sees it tells whether the walk saw what the loader resolved
MARKERS = [("sklearn.utils._bunch", "Bunch"), ("numpy.random._pickle", "__generator_ctor"),
           ("scipy.sparse._csr", "csr_matrix"), ("builtins", "slice")]


def base_streams() -> list[bytes]:
    """Benign files: joblib (Python pickler, arrays after their wrappers) and pickle."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1])
    objects = [{"a": np.arange(5, dtype="u1"), "b": np.ones(3), "c": [1, "x"]},
               {"o": np.array(["a", None, 1], dtype=object), "f": np.zeros((2, 2), "<f4")},
               model, [np.arange(3), (np.int64(2), np.float32(1.5))]]
    streams = []
    for obj in objects:
        for protocol in (2, 4, 5):
            buf = io.BytesIO()
            joblib.dump(obj, buf, protocol=protocol)
            streams.append(buf.getvalue())
            streams.append(pickle.dumps(obj, protocol=protocol))
    return streams


def _piece(rng: random.Random) -> bytes:
    """A few opcodes: a marker global (pushed, popped), a BINBYTES header that swallows
    what follows, or pushes and pops."""
    kind = rng.random()
    if kind < 0.4:
        module, name = rng.choice(MARKERS)
        return f"c{module}\n{name}\n0".encode()
    if kind < 0.7:
        return b"B" + struct.pack("<I", rng.randrange(0, 40))
    return b"N0" * rng.randrange(1, 4)


def framed_wrapper(rng: random.Random) -> bytes:
    """A joblib array wrapper whose BUILD sits inside a frame that goes on after it, the
    array's bytes after the frame, random pieces on both sides (the shape of the attacks
    the frame-aware reader answers)."""
    from benchmarks.audit_corpus.attacks import MAKERS, _shape, _state

    code = rng.choice(["u1", "f8", "O"])
    count = rng.randrange(0, 6)
    extra = b"\x8c\x1bnumpy_array_alignment_bytesK\x08" if rng.random() < 0.3 else b""
    body = (rng.choice(list(MAKERS.values())) + _state(_shape(count), code, extra) + b"b"
            + b"".join(_piece(rng) for _ in range(rng.randrange(0, 3))))
    if code == "O":
        array = b"\x80\x02" + b"".join(_piece(rng) for _ in range(2)) + b"N."
    else:
        array = (b"\0" if extra else b"") + bytes(count * (8 if code == "f8" else 1))
    tail = b"".join(_piece(rng) for _ in range(rng.randrange(0, 4)))
    return (b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body + array + tail
            + b"\0" * rng.randrange(0, 3) + b"N.")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One mutation of the kinds that put a reader out of step."""
    kind = rng.random()
    at = rng.randrange(2, max(3, len(data)))
    if kind < 0.3:  # an allowed global, pushed and popped
        module, name = rng.choice(MARKERS)
        return data[:at] + f"c{module}\n{name}\n0".encode() + data[at:]
    if kind < 0.65:  # a FRAME: to a later byte, to the end, or past it
        end = rng.choice([rng.randrange(at, len(data) + 1), len(data), len(data) + 9,
                          at + rng.randrange(0, 12)])
        return data[:at] + b"\x95" + struct.pack("<Q", max(0, end - at)) + data[at:]
    if kind < 0.8:
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
    if kind < 0.9:
        return data[:at] + data[at + rng.randrange(1, 9):]
    span = data[at:at + rng.randrange(1, 24)]
    return data[:at] + span + data[at:]


def walk_names(data: bytes, joblib: bool) -> tuple[set[str], bool]:
    """(names the audit's reading records, whether it flagged that it could not follow)."""
    walk = PickleWalk("joblib.load" if joblib else "pickle.load", joblib=joblib,
                      budget=Budget(seconds=30))
    try:
        walk_stream(Source(io.BytesIO(data), True, 1 << 30), walk)
    except StreamError as exc:
        if type(exc).__name__ == "Unfollowable":
            return set(walk.imports), True
    except (BudgetExceeded, EOFError, ValueError, RecursionError):
        return set(walk.imports), True
    return set(walk.imports) | set(walk.calls), any(
        f.kind in ("budget", "unfollowable") for f in walk.findings)


# ------------------------------------------------------------------------------ child

def _recorder(base):
    class Recording(base):
        def find_class(self, module, name):
            self.names.append([module, name])  # as asked: the base class maps old names
            if all(classify(*n, VALUE) is not None for n in ((module, name),
                                                              resolve(module, name, 0))):
                raise pickle.UnpicklingError(f"refused {module}.{name}")
            return super().find_class(module, name)
    return Recording


def child(paths: list[str]) -> None:
    """Load each stream both ways; one JSON line per stream, written before the next."""
    import warnings

    from joblib.numpy_pickle import NumpyUnpickler

    warnings.simplefilter("ignore")
    joblib_cls, c_cls = _recorder(NumpyUnpickler), _recorder(pickle.Unpickler)
    for path in paths:
        result = {}
        for key in ("joblib", "pickle"):
            unpickler = None
            try:
                with open(path, "rb") as fh:
                    unpickler = joblib_cls(path, fh, True) if key == "joblib" else c_cls(fh)
                    unpickler.names = []
                    unpickler.load()
            except BaseException:  # a mutated stream may raise anything
                pass
            result[key] = list(unpickler.names) if unpickler is not None else []
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def _load_all(paths: list[Path]) -> list[dict | None]:
    """The child's results; a stream that crashed the child (numpy on a forged dtype)
    gets None and the rest go on in a new child."""
    results: list[dict | None] = []
    while len(results) < len(paths):
        rest = [str(p) for p in paths[len(results):]]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(rest, fh)
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.audit_corpus.fuzz",
                                   "--child", fh.name], capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT_S,
                                  cwd=Path(__file__).resolve().parents[2])
        finally:
            os.unlink(fh.name)
        done = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        results += done
        if len(results) < len(paths):
            results.append(None)
    return results


def run(streams: int, seed: int) -> dict:
    rng = random.Random(seed)
    bases = base_streams()
    cases = [bases[i % len(bases)] for i in range(len(bases))]
    while len(cases) < streams:
        data = framed_wrapper(rng) if rng.random() < 0.4 else rng.choice(bases)
        for _ in range(rng.choice([1, 2, 2, 3, 4])):
            data = mutate(data, rng)
        cases.append(data)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(cases):
            path = Path(tmp) / f"{i}.pkl"
            path.write_bytes(data)
            paths.append(path)
        loaded = _load_all(paths)
    missed, resolving, crashed = [], {"joblib": 0, "pickle": 0}, 0
    for data, result in zip(cases, loaded, strict=True):
        if result is None:
            crashed += 1
            continue
        for key in ("joblib", "pickle"):
            resolving[key] += bool(result[key])
            seen, flagged = walk_names(data, key == "joblib")
            unseen = sorted({f"{m}.{n}" for m, n in result[key]
                             if f"{m}.{n}" not in seen and ".".join(resolve(m, n, 0)) not in seen})
            if unseen and not flagged:
                missed.append({"loader": key, "unseen": unseen, "stream": data.hex()})
    return {"streams": len(cases), "seed": seed, "resolving_a_name": resolving,
            "crashed_the_loader": crashed, "missed": missed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_corpus.fuzz",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child.read_text()))
        return 0
    result = run(args.streams, args.seed)
    shown = [{**m, "stream": m["stream"][:400]} for m in result["missed"][:5]]
    print(json.dumps({**result, "missed": shown,
                      "missed_count": len(result["missed"])}, indent=1))
    return 1 if result["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
