"""Each protocol's figure, taken again by a minimal script that follows the protocol as
`persistbench/results/protocols.py` documents it, beside the harness's figure.

The script shares nothing with the harness's measuring code (`persistbench.measure`,
`persistbench.experiments`, `persistbench.schedule`): it reads the fitted model from the
harness's model cache (a file), writes its own files with pickle protocol 5 and skops.io, and
times them in processes of its own, as each protocol's `process` says:

  warm-repeated             a fork of an interpreter that imported the libraries: 2 loads,
                            more until 10 ms, then samples; nothing between samples
  first-in-worker           an interpreter that imported every library the harness measures
                            (numpy, scikit-learn, joblib, cloudpickle, skops.io, onnxruntime,
                            skl2onnx) reads the input row, reviews skops's types,
                            freezes its collector (gc.freeze) and forks; the fork's first act
                            is the timed load
  first-predict-after-load  load (untimed), then time `predict` of one row
  isolated-peak-memory      gc.collect(), malloc_trim(0), clear_refs, load: VmHWM - RSS before
  cold-page-cache           after the warm loads: fsync + POSIX_FADV_DONTNEED before each load
  first-load-fresh-process  a new interpreter imports what the file needs (nothing else),
                            reads the input row, reviews skops's types, freezes its collector
                            and forks; the fork's first act is the timed load

and, for reference, the first load in a new interpreter that never forks (the `exec`
column): what a server that loads where it imported pays, without the worker's copy-on-write
faults. BLAS/OpenMP run at one thread, as the harness's cells and servers do.

    python -m benchmarks.protocol_check [RESULTS.json ...] [--rounds 3]

Without results files, each round runs, cell by cell, `persistbench run` on that cell and the
script's own figures of it, in alternating order (harness first in even rounds), so both see
the same machine within seconds. The harness's figure is the median over the results files;
the script's the median over its rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ("logreg", "kneighbors")
SIZES = ("small", "medium")
FORMATS = ("pickle-p5", "skops")
TOLERANCE = 0.15
PAGE_SLACK = 16 * 1024
SAMPLES = 15
STARTS = 3  # new interpreters per cell and round, as the harness's `--starts 3`
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# (protocol, the harness's key, the script's key)
FIGURES = (
    ("warm-repeated", "load_s", "warm"),
    ("first-in-worker", "load_first_s", "first"),
    ("cold-page-cache", "load_cold_s", "cold"),
    ("first-predict-after-load", "first_predict_s", "predict"),
    ("isolated-peak-memory", "load_peak_rss_bytes", "peak"),
    ("first-load-fresh-process", "start_load_s", "fresh"),
)

# An interpreter that imported every library reads the row, reviews skops's types, freezes
# its collector and forks; the fork's first act is the first load, then it measures the rest.
# argv = format, file, rows (.npy), samples. Prints JSON.
IN_FORK = r'''
import ctypes, gc, json, os, pickle, sys, time
import numpy as np
import cloudpickle, joblib, onnxruntime, skl2onnx, sklearn, skops.io as sio
from threadpoolctl import threadpool_limits
threadpool_limits(1)
fmt, path, rows, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
X = np.load(rows)
trusted = sio.get_untrusted_types(file=path) if fmt == "skops" else None
def load():
    if fmt == "skops":
        return sio.load(path, trusted=trusted)
    with open(path, "rb") as fh:
        return pickle.load(fh)
def timed(fn):
    t = time.perf_counter(); v = fn(); return time.perf_counter() - t, v
def figures():
    out = {}
    out["first"], model = timed(load)
    model.predict(X)
    model = None
    def warm_up(fn, runs):
        start, done = time.perf_counter(), 0
        while done < runs or time.perf_counter() - start < 0.01:
            fn(); done += 1
    warm_up(load, 2)
    out["warm"] = [timed(load)[0] for _ in range(n)]
    def predict_sample():
        m = load()
        return timed(lambda: m.predict(X))[0]
    warm_up(predict_sample, 1)
    out["predict"] = [predict_sample() for _ in range(n)]
    libc = ctypes.CDLL("libc.so.6")
    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    peaks = []
    for _ in range(3):
        gc.collect(); libc.malloc_trim(0)
        before = status("VmRSS:")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        m = load()
        peaks.append(status("VmHWM:") - before)
        m = None
    out["peak"] = peaks
    def evict():
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
    cold = []
    for _ in range(n):
        evict(); cold.append(timed(load)[0])
    out["cold"] = cold
    return out
gc.freeze()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, json.dumps(figures()).encode()); os._exit(0)
os.close(w)
print(os.read(r, 1 << 20).decode())
os.waitpid(pid, 0)
'''

# A server's start: argv = format, file, rows, modules (comma-separated), how. A new
# interpreter imports the modules and reads the row; `fork`: it reviews skops's types,
# freezes its collector and forks, and the fork's first act is the timed load; `exec`: the
# interpreter itself loads (it never forks). Prints JSON.
FRESH = r'''
import gc, importlib, json, os, pickle, sys, time
for name in sys.argv[4].split(","):
    importlib.import_module(name)
import numpy as np
fmt, path, how = sys.argv[1], sys.argv[2], sys.argv[5]
X = np.load(sys.argv[3])
if fmt == "skops":
    import skops.io as sio
    trusted = sio.get_untrusted_types(file=path)
def first_load():
    t = time.perf_counter()
    if fmt == "skops":
        model = sio.load(path, trusted=trusted)
    else:
        with open(path, "rb") as fh:
            model = pickle.load(fh)
    loaded = time.perf_counter() - t
    model.predict(X)
    return loaded
if how == "exec":
    print(json.dumps({"exec": first_load()}))
else:
    gc.freeze()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, repr(first_load()).encode()); os._exit(0)
    os.close(w)
    print(json.dumps({"fresh": float(os.read(r, 100))}))
    os.waitpid(pid, 0)
'''


def child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, **THREADS}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cached_model(model: str, size: str):
    """The harness's fitted model and evaluation rows, read from its cache file."""
    from persistbench.sources.models import MODELS as ZOO
    from persistbench.sources.models import cache_path

    with open(cache_path(ZOO[model], size, 0), "rb") as fh:
        return pickle.load(fh)


def write_files(folder: Path) -> dict:
    """(model, size, format) -> (file, rows file, modules a server imports)."""
    import numpy as np
    import skops.io as sio

    found = {}
    for model in MODELS:
        for size in SIZES:
            est, X = cached_model(model, size)
            rows = folder / f"{model}-{size}.npy"
            np.save(rows, np.asarray(X[:1]))
            for fmt in FORMATS:
                path = folder / f"{model}-{size}.{fmt}"
                if fmt == "skops":
                    sio.dump(est, path)
                    modules = ["numpy", "sklearn", "skops.io"]
                else:
                    with open(path, "wb") as fh:
                        pickle.dump(est, fh, protocol=5)
                    modules = ["numpy", "sklearn", type(est).__module__]
                found[(model, size, fmt)] = (path, rows, modules)
    return found


def script_cell(key: tuple, files: dict, per: dict) -> None:
    """The script's own figures of one cell, appended to `per`."""
    path, rows, modules = files[key]
    got = child(IN_FORK, key[2], str(path), str(rows), str(SAMPLES))
    for name, value in got.items():
        per[key][name].append(statistics.median(value) if isinstance(value, list) else value)
    for how, name, starts in (("fork", "fresh", STARTS), ("exec", "exec", 1)):
        got = [child(FRESH, key[2], str(path), str(rows), ",".join(modules), how)[name]
               for _ in range(starts)]
        per[key][name].append(statistics.median(got))


def harness_cell(key: tuple, output: Path) -> Path:
    """One `persistbench run` of one cell (the harness measures, this script reads)."""
    subprocess.run([sys.executable, "-m", "persistbench", "run", "--models", key[0],
                    "--sizes", key[1], "--formats", key[2], "--starts", str(STARTS),
                    "--no-calibrate", "--only", "--output", str(output)],
                   check=True, stdout=subprocess.DEVNULL)
    return output


def rounds_of(count: int, folder: Path, results: list[Path]) -> tuple[dict, list[Path]]:
    """`count` rounds of the script's figures, each cell beside a harness run of its own
    unless results files were given: (cell -> script key -> median over rounds, results)."""
    files = write_files(folder)
    per: dict = {key: {k: [] for k in (*(k for _, _, k in FIGURES), "exec")} for key in files}
    made = []
    for index in range(count):
        for number, key in enumerate(files):
            steps = [lambda key=key: script_cell(key, files, per)]
            if not results:
                output = folder / f"harness-{index}-{number}.json"
                steps.insert(index % 2, lambda key=key, output=output:
                             made.append(harness_cell(key, output)))
            for step in steps:
                step()
    figures = {key: {k: statistics.median(v) for k, v in figs.items()}
               for key, figs in per.items()}
    return figures, results or made


def harness_figures(paths: list[Path]) -> dict:
    """(model, size, format) -> harness key -> median over the results files."""
    per: dict = {}
    for path in paths:
        for cell in json.loads(path.read_text())["cells"]:
            key = (cell["model"], cell["size"], cell["format"])
            if key[0] not in MODELS or key[2] not in FORMATS or cell.get("status") != "ok":
                continue
            for _, hkey, _ in FIGURES:
                value = cell.get(hkey)
                value = value.get("median") if isinstance(value, dict) else value
                if value is not None:
                    per.setdefault(key, {}).setdefault(hkey, []).append(value)
    return {key: {k: statistics.median(v) for k, v in figs.items()} for key, figs in per.items()}


def show(value: float, key: str) -> str:
    if key == "load_peak_rss_bytes":
        return f"{value / 2**10:.0f} KiB" if value < 2**20 else f"{value / 2**20:.2f} MiB"
    return f"{value * 1e6:.0f} µs" if value < 1e-3 else f"{value * 1e3:.2f} ms"


def agrees(mine: float, theirs: float, key: str) -> bool:
    """Within ±15 %; a peak within 16 KiB also agrees (the mark moves by whole pages, so a
    few pages apart reads as 2x on a load that needs almost nothing)."""
    if key == "load_peak_rss_bytes" and abs(mine - theirs) <= PAGE_SLACK:
        return True
    return theirs > 0 and abs(mine / theirs - 1) <= TOLERANCE


def table(harness: dict, script: dict) -> tuple[str, int, int]:
    lines = ["| protocol | cell | harness | script | ratio | agree | new interpreter (exec) |",
             "|---|---|---|---|---|---|---|"]
    agree = total = 0
    for protocol, hkey, skey in FIGURES:
        for key in sorted(script):
            mine, theirs = harness.get(key, {}).get(hkey), script[key].get(skey)
            total += 1
            extra = show(script[key]["exec"], hkey) if skey == "fresh" else ""
            if mine is None or theirs is None:
                lines.append(f"| {protocol} | {'/'.join(key)} | {mine} | {theirs} | | no | |")
                continue
            ok = agrees(mine, theirs, hkey)
            agree += ok
            ratio = f"{mine / theirs:.2f}" if theirs else ""
            lines.append(f"| {protocol} | {'/'.join(key)} | {show(mine, hkey)} | "
                         f"{show(theirs, hkey)} | {ratio} | {'yes' if ok else 'no'} | {extra} |")
    return "\n".join(lines), agree, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path,
                        help="persistbench results files of the same cells (--models "
                             "logreg,kneighbors --sizes small,medium --formats "
                             "pickle-p5,skops); without any, each round runs one first")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=".protocol-check-", dir=".") as folder:
        script, results = rounds_of(args.rounds, Path(folder), args.results)
        harness = harness_figures(results)
    text, agree, total = table(harness, script)
    print(text)
    print(f"\n{agree} of {total} figures agree within ±{TOLERANCE:.0%} ({args.rounds} rounds; "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
