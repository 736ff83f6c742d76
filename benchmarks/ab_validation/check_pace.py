"""How much slower a paced environment really loads, measured without the harness.

Independent of `persistbench ab`'s machinery: the zoo models are dumped with plain
pickle/joblib calls, and two plain interpreters (one per environment, not forked from any
server) load each file in a loop, `open` + `pickle.load` or `joblib.load` timed with
perf_counter (and the thread's CPU time, read outside that pair) and nothing in between,
the two taking turns in a random order, over several fresh pairs of interpreters. The figure
is the median over turns of log(B / A) of the turn's median load, by wall and by CPU time:
what the A/B should find.

    python -m benchmarks.ab_validation.check_pace --factor 0.05 [--processes 6] [--turns 10]
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.ab_validation.sides import base_environment, paced

WORKER = r"""
import json, pickle, sys, time
import cloudpickle, joblib
files = json.loads(sys.argv[1])
def load(kind, path):
    if kind in ("pickle", "cloudpickle"):
        with open(path, "rb") as fh:
            return (pickle if kind == "pickle" else cloudpickle).load(fh)
    return joblib.load(path, mmap_mode="r" if kind == "joblib-mmap" else None)
for name, (kind, path) in files.items():
    for _ in range(20):
        load(kind, path)
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    out = {}
    for name, (kind, path) in files.items():
        times, cpus = [], []
        for _ in range(n):
            cpu = time.thread_time()
            start = time.perf_counter()
            load(kind, path)
            times.append(time.perf_counter() - start)
            cpus.append(time.thread_time() - cpu)
        times.sort()
        cpus.sort()
        out[name] = [times[len(times) // 2], cpus[len(cpus) // 2]]
    print(json.dumps(out), flush=True)
"""

MODELS = ("logreg", "random_forest", "kneighbors")


def dump_files(directory: Path) -> dict[str, tuple[str, str]]:
    import joblib

    from persistbench.sources.models import load_cached
    from persistbench.sources.resolve import resolve_spec

    files = {}
    for model in MODELS:
        est, _ = load_cached(resolve_spec(model), "small", 0)
        path = directory / f"{model}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(est, fh, protocol=5)
        files[f"{model}/pickle-p5"] = ("pickle", str(path))
        files[f"{model}/cloudpickle"] = ("cloudpickle", str(path))
        path = directory / f"{model}.joblib"
        joblib.dump(est, path)
        files[f"{model}/joblib"] = ("joblib", str(path))
        files[f"{model}/joblib-mmap"] = ("joblib-mmap", str(path))
    return files


def _turns(a: Path, b: Path, files: dict, turns: int, loads: int,
           logs: dict[str, list[list[float]]]) -> None:
    """One fresh interpreter per side, taking turns; log(B/A) of each turn's medians (wall,
    CPU)."""
    procs = {side: subprocess.Popen([str(python), "-I", "-c", WORKER, json.dumps(files)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for side, python in (("a", a), ("b", b))}
    try:
        for proc in procs.values():
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("a worker did not start")
        for _ in range(turns):
            got = {}
            for side in random.sample(["a", "b"], 2):
                procs[side].stdin.write(f"{loads}\n")
                procs[side].stdin.flush()
                got[side] = json.loads(procs[side].stdout.readline())
            for name in files:
                logs[name].append([math.log(b / a) for a, b in
                                   zip(got["a"][name], got["b"][name], strict=True)])
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()


def measure(a: Path, b: Path, files: dict, processes: int, turns: int,
            loads: int) -> dict[str, float]:
    """Per file, the median over all turns of log(B/A) of the turn's median load.

    A process's timings move together (memory layout), so the turns are spread over
    `processes` fresh pairs of interpreters, one pair after the other."""
    logs: dict[str, list[list[float]]] = {name: [] for name in files}
    for _ in range(processes):
        _turns(a, b, files, turns, loads, logs)
    return {name: np.median(np.asarray(values), axis=0) for name, values in logs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=0.05)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--turns", type=int, default=10, help="per pair of processes")
    parser.add_argument("--loads", type=int, default=50)
    args = parser.parse_args()
    base = base_environment()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        a, b = paced(base, 0.0, root), paced(base, args.factor, root)
        (root / "files").mkdir()
        files = dump_files(root / "files")
        found = measure(a, b, files, args.processes, args.turns, args.loads)
    for name, (wall, cpu) in found.items():
        print(f"{name:28s} B/A wall {math.exp(wall):.4f}  CPU {math.exp(cpu):.4f}")
    overall = np.exp(np.median(np.asarray(list(found.values())), axis=0))
    print(f"median B/A wall {overall[0]:.4f}, CPU {overall[1]:.4f} (pace {args.factor:g})")


if __name__ == "__main__":
    main()
