"""Server starts measured once per shared import prefix, not once per cell.

A server's start is a new interpreter that imports the modules its file needs (numpy, then
scikit-learn, then the format's library, then the file's own modules: `segments`), loads the
file and predicts one row. One interpreter per cell cost about 1 s here, 94 s of a 106 s
quick run, though the cells share prefixes of that import sequence: every one starts with
numpy, every scikit-learn one continues with sklearn, and skops.io imports every estimator
module, so after it nothing of a model is left to import.

So one new interpreter per start imports the shared prefix and forks where the cells' import
lists part: each fork continues exactly where its parent was, imports its own next part
(timed), and forks again; a part with nothing left to import is no fork (`lifted`); a leaf
reads its cell's input row, then forks a worker whose first acts are the load and the
prediction, each timed alone (`serving.first_use_in_worker`). A cell's `start_import_s` is
the sum of the parts on its path, each timed once, in a process that had imported exactly
what came before it, in the server's order.

What this sharing assumes (the report says it): the interpreter's start-up and each shared
import part cost the same for every cell that shares them. The load stands for a prefork
server's worker (`first-load-fresh-process`): its first writes to pages it shares with its
parent are copy-on-write faults, counted; a server loading where it imported pays none.

Run as `python -m persistbench.experiments.starts PLAN OUT`: the plan is the prefix tree, and
every process appends one JSON line per part or leaf to OUT.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from persistbench.experiments.serving import (
    FORMAT_MODULES,
    first_use_in_worker,
    load_input,
    server_environment,
)

LEAF_OVERHEAD_S = 10.0  # per leaf, on top of the plan's own timeout: a slow load still ends


def segments(modules: list[str]) -> list[tuple[str, ...]]:
    """The import list in the order the cells share most, cut where they can part: numpy,
    then each other top-level package of the file's modules (scikit-learn's `__init__`, what
    any submodule's import runs first), then the format's library (`FORMAT_MODULES`,
    onnxruntime), then the file's own modules.

    A server imports its format's library before loading, and the load imports the file's
    modules, so this is a server's own order. It also lets the cells share the heavy parts:
    skops.io imports every estimator module scikit-learn has, and scikit-learn imports
    joblib and cloudpickle, so what follows those is already imported (`lifted`).
    """
    libraries = {name for names in FORMAT_MODULES.values() for name in names} | {"onnxruntime"}
    own = [m for m in modules if m not in libraries]
    tops = list(dict.fromkeys(m.split(".")[0] for m in own))
    tops.sort(key=lambda top: (top != "numpy", top in libraries))
    out = [(top,) for top in tops]
    out += [(m,) for m in modules if m in libraries and (m,) not in out]
    rest = tuple(m for m in own if m not in tops)
    return [*out, rest] if rest else out


def plan(entries: list[dict]) -> dict:
    """The prefix tree of the entries' import segments; each entry (cell id, format, model
    file, input rows, modules) becomes a leaf under the node of its last segment."""
    root: dict = {"id": "", "modules": [], "children": {}, "leaves": []}
    for entry in entries:
        node = root
        for segment in segments(entry["modules"]):
            key = "|".join(segment)
            node = node["children"].setdefault(key, {"id": f"{node['id']}/{key}",
                                                     "modules": list(segment),
                                                     "children": {}, "leaves": []})
        node["leaves"].append({k: entry[k] for k in ("cell_id", "format", "model", "rows")})

    def lists(node: dict) -> dict:
        return {**node, "children": [lists(c) for c in node["children"].values()]}

    return lists(root)


def _write(out: str, record: dict) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def _in_fork(out: str, work, on_death: list[dict]) -> None:
    """Run `work()` in a fork and wait for it; if it dies, say so for what it was to measure."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException as exc:  # reported, then this fork ends: the parent goes on
            for record in on_death:
                _write(out, {**record, "error": f"{type(exc).__name__}: {exc}"})
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        for record in on_death:
            _write(out, {**record, "error": f"killed by signal {os.WTERMSIG(status)}"})


def _leaves(node: dict) -> list[dict]:
    return node["leaves"] + [leaf for child in node["children"] for leaf in _leaves(child)]


def _serve_leaf(leaf: dict, out: str, path: list[str]) -> None:
    started = time.perf_counter()
    X = load_input(Path(leaf["rows"]))
    served = first_use_in_worker(leaf["format"], Path(leaf["model"]), X)
    _write(out, {"leaf": leaf["cell_id"], "path": path, **served,
                 "total_s": time.perf_counter() - started})


def lifted(node: dict, imported) -> tuple[list[dict], list[dict]]:
    """The node's leaves and children once every child with nothing left to import (each of
    its modules in `imported`) is replaced by its own leaves and children; children that
    import the same modules are merged, so each part is imported, and timed, once."""
    leaves = list(node["leaves"])
    children: dict[tuple[str, ...], dict] = {}
    pending = list(node["children"])
    while pending:
        child = pending.pop(0)
        if all(name in imported for name in child["modules"]):
            leaves += child["leaves"]
            pending += child["children"]
            continue
        key = tuple(child["modules"])
        if key in children:
            same = children[key]
            children[key] = {**same, "leaves": same["leaves"] + child["leaves"],
                             "children": same["children"] + child["children"]}
        else:
            children[key] = child
    return leaves, list(children.values())


def run_node(node: dict, out: str, path: list[str] | None = None) -> None:
    """Import this node's part (timed), then each leaf in a fork, then each child in one;
    a leaf records the nodes it passed, whose import times make its `import_s`."""
    started = time.perf_counter()
    for name in node["modules"]:
        importlib.import_module(name)
    _write(out, {"node": node["id"], "import_s": time.perf_counter() - started})
    path = [*(path or []), node["id"]]
    leaves, children = lifted(node, sys.modules)
    for leaf in leaves:
        _in_fork(out, lambda leaf=leaf: _serve_leaf(leaf, out, path),
                 [{"leaf": leaf["cell_id"]}])
    for child in children:
        _in_fork(out, lambda child=child: run_node(child, out, path),
                 [{"leaf": leaf["cell_id"]} for leaf in _leaves(child)])


def main() -> None:
    entered = time.monotonic()  # CLOCK_MONOTONIC: the parent's clock too (Linux)
    plan_path, out = sys.argv[1], sys.argv[2]
    tree = json.loads(Path(plan_path).read_text())
    _write(out, {"node": "", "entered_monotonic": entered})
    run_node(tree, out)


def start_once(tree: dict, workdir: Path, timeout_s: float) -> dict[str, dict]:
    """One new interpreter through the whole tree: cell id -> its start measures, or
    {"error": why} for a cell whose part or leaf failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan_path, out = workdir / "plan.json", workdir / "starts.jsonl"
    plan_path.write_text(json.dumps(tree))
    out.unlink(missing_ok=True)
    spawned = time.monotonic()
    with open(workdir / "starts.stderr", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "persistbench.experiments.starts",
                                 str(plan_path), str(out)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr,
                                env=server_environment(), start_new_session=True)
        try:
            proc.wait(timeout=timeout_s + LEAF_OVERHEAD_S * len(_leaves(tree)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    records = [json.loads(line) for line in out.read_text().splitlines()] \
        if out.exists() else []
    return assemble(tree, records, spawned, proc.returncode,
                    (workdir / "starts.stderr").read_text(errors="replace"))


def assemble(tree: dict, records: list[dict], spawned: float, returncode: int | None,
             stderr: str) -> dict[str, dict]:
    """Each leaf's measures from the records: imports summed along its path; the total from
    spawning the interpreter (start-up included) through its leaf's load and predictions."""
    imports = {r["node"]: r["import_s"] for r in records if "import_s" in r}
    entered = next((r["entered_monotonic"] for r in records if "entered_monotonic" in r), None)
    served = {r["leaf"]: r for r in records if "leaf" in r}
    tail = stderr.strip().splitlines()
    why_not = (f"the start interpreter exited with status {returncode}: "
               f"{tail[-1] if tail else 'no message'}")
    found: dict[str, dict] = {}
    for leaf in _leaves(tree):
        done = served.get(leaf["cell_id"])
        path = (done or {}).get("path", [])
        if done is None or "error" in done or entered is None \
                or any(p not in imports for p in path):
            found[leaf["cell_id"]] = {"error": (done or {}).get("error") or why_not}
            continue
        import_s = sum(imports[p] for p in path)
        found[leaf["cell_id"]] = {
            "import_s": import_s, "load_s": done["load_s"],
            "first_predict_s": done["first_predict_s"], "floor_s": done["floor_s"],
            "total_s": (entered - spawned) + import_s + done["total_s"]}
    return found


def measure_starts(entries: list[dict], workdir: Path, repeats: int,
                   timeout_s: float) -> dict[str, list[dict]]:
    """`repeats` new interpreters through the entries' prefix tree: cell id -> one measure
    dict per start."""
    tree = plan(entries)
    found: dict[str, list[dict]] = {e["cell_id"]: [] for e in entries}
    for index in range(repeats):
        for cell, measures in start_once(tree, workdir / f"start{index}", timeout_s).items():
            found[cell].append(measures)
    return found


def summary(starts: list[dict[str, Any]]) -> dict:
    """A cell's start measures as the results record them (the roundtrip's `start_*`)."""
    from persistbench.measure.phases import stats

    failed = [s["error"] for s in starts if "error" in s]
    if failed:
        return {"error": failed[0]}
    out = {f"start_{key}": stats([s[key] for s in starts])
           for key in ("import_s", "load_s", "first_predict_s", "total_s")}
    floor = sorted(s["floor_s"] for s in starts)[len(starts) // 2]
    for key in ("start_import_s", "start_load_s", "start_first_predict_s"):
        out[key]["floor_s"] = floor
    return out


if __name__ == "__main__":
    main()
