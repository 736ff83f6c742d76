"""The audit's benchmark: benign and malicious files, verified, audited, counted and timed.

    python -m benchmarks.audit_corpus.corpus [--folder DIR] [--large-mb 600] [--output results.json]

Benign files: models outside the zoo written with pickle protocols 0-5, joblib with every
codec, cloudpickle, skops and ONNX, plus arrays and a model re-saved after a memory-mapped
load; a `.json` file must be refused (exit 2). Malicious files (`payloads.PAYLOADS`): each
with a payload is first loaded by its natural loader in a sandboxed child (own folder,
memory and CPU limits, timeout) to prove it runs there. Then every file is audited in a
child that installs an audit hook: any process start, code execution by the unpickler or
write of a canary there means the audit ran a payload. With `--large-mb`, a model of that
size is written as joblib and as a protocol-5 pickle and each is audited in a fresh child
that reports its own wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from benchmarks.audit_corpus.attacks import ATTACK_CLASSES, reset, took_effect, write_attacks
from benchmarks.audit_corpus.payloads import CLASSES, Payload, write_all

CHILD_TIMEOUT_S = 120
REPOSITORY = Path(__file__).resolve().parents[2]  # the audit child runs this module by name
SANDBOX_MEMORY = 4 << 30
# Python audit events that mean a payload ran in the auditing process
FORBIDDEN_EVENTS = ("pickle.find_class", "os.system", "subprocess.Popen", "os.posix_spawn",
                    "os.exec", "os.fork", "os.spawn", "pty.spawn", "shutil.rmtree",
                    "os.remove")


# ------------------------------------------------------------------------------- benign

def _models():
    """Fitted models outside the zoo, on small data."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        IsolationForest,
    )
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import Lasso, Ridge, SGDClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import NearestNeighbors
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, QuantileTransformer, StandardScaler
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] > 0).astype(int)
    yr = X @ [1.0, 2.0, 0.5, -1.0]
    Xc = np.c_[rng.integers(0, 4, 120), X[:, 1:]]
    texts = [f"word{i % 7} word{i % 5} token{i % 3}" for i in range(120)]
    return {
        "hgb-categorical": HistGradientBoostingClassifier(categorical_features=[0],
                                                          max_iter=10).fit(Xc, y),
        "gbr": GradientBoostingRegressor(n_estimators=10).fit(X, yr),
        "extra-trees": ExtraTreesRegressor(n_estimators=5).fit(X, yr),
        "isolation-forest": IsolationForest(n_estimators=5, random_state=0).fit(X),
        "kmeans": KMeans(3, n_init=2, random_state=0).fit(X),
        "gaussian-nb": GaussianNB().fit(X, y),
        "tree": DecisionTreeRegressor(max_depth=4).fit(X, yr),
        "column-pipeline": make_pipeline(ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="ignore"), [0]),
             ("num", StandardScaler(), [1, 2, 3])]), LinearSVC()).fit(Xc, y),
        "grid-ridge": GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2).fit(X, yr),
        "hashing-sgd": make_pipeline(HashingVectorizer(n_features=64),
                                     SGDClassifier(random_state=0)).fit(texts, y),
        "lasso": Lasso(alpha=0.1).fit(X, yr),
        "quantile": QuantileTransformer(n_quantiles=20).fit(X),
        "ball-tree": NearestNeighbors(algorithm="ball_tree").fit(X),
    }, X


def _arrays():
    import numpy as np
    from scipy import sparse

    return {"masked": np.ma.masked_array(np.arange(6.0), [0, 1, 0, 0, 1, 0]),
            "sparse": sparse.random(20, 20, 0.2, format="csr", random_state=0),
            "objects": np.array(["a", 1, None], dtype=object),
            "datetimes": np.array(["2024-01-01"], dtype="M8[ns]")}


def _onnx(model, X, path: Path) -> None:
    from skl2onnx import to_onnx

    path.write_bytes(to_onnx(model, X[:1].astype("float32")).SerializeToString())


def write_benign(folder: Path) -> list[tuple[str, Path, int]]:
    """(name, file, expected exit status) for every benign file."""
    import cloudpickle
    import joblib
    import numpy as np
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    folder.mkdir(parents=True, exist_ok=True)
    models, X = _models()
    files: list[tuple[str, Path, int]] = []

    def add(name: str, path: Path, expected: int = 0) -> None:
        files.append((name, path, expected))

    for name, model in models.items():
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            path = folder / f"{name}.p{protocol}.pkl"
            path.write_bytes(pickle.dumps(model, protocol=protocol))
            add(f"{name} pickle p{protocol}", path)
    for name in ("hgb-categorical", "column-pipeline", "extra-trees"):
        for codec in (None, "zlib", "gzip", "bz2", "lzma", "xz", "lz4"):
            path = folder / f"{name}.{codec or 'raw'}.joblib"
            joblib.dump(models[name], path, compress=(codec, 3) if codec else 0)
            add(f"{name} joblib {codec or 'uncompressed'}", path)
        path = folder / f"{name}.p2.joblib"
        joblib.dump(models[name], path, protocol=2)
        add(f"{name} joblib protocol 2", path)
    for name in ("gbr", "kmeans", "quantile", "tree", "lasso"):
        path = folder / f"{name}.skops"
        sio.dump(models[name], path)
        add(f"{name} skops", path)
    for name in ("gbr", "kmeans", "grid-ridge"):
        path = folder / f"{name}.cloudpkl"
        path.write_bytes(cloudpickle.dumps(models[name]))
        add(f"{name} cloudpickle", path)
    shipped = FunctionTransformer(lambda x: np.log1p(np.abs(x))).fit(X)
    path = folder / "lambda-transformer.cloudpkl"
    path.write_bytes(cloudpickle.dumps(shipped))
    add("lambda transformer cloudpickle (code stored, not called)", path)
    for name in ("gaussian-nb", "tree", "lasso"):
        path = folder / f"{name}.onnx"
        _onnx(models[name], X, path)
        add(f"{name} onnx", path)
    for name, array in _arrays().items():
        for protocol in (0, 2, 5):
            path = folder / f"{name}.p{protocol}.pkl"
            path.write_bytes(pickle.dumps(array, protocol=protocol))
            add(f"{name} array pickle p{protocol}", path)
    path = folder / "mmap-source.joblib"
    joblib.dump(models["extra-trees"], path)
    resaved = folder / "mmap-resaved.pkl"
    resaved.write_bytes(pickle.dumps(joblib.load(path, mmap_mode="r")))  # our own file
    add("model re-saved after an mmap load (numpy.memmap)", resaved)
    path = folder / "metadata.json"
    path.write_text(json.dumps({"model": "not a model file"}))
    add("a .json file (not a model: exit 2)", path, 2)
    return files


def write_large(folder: Path, megabytes: int) -> list[tuple[str, Path, int]]:
    """A nearest-neighbours model holding `megabytes` of training data, two ways."""
    import joblib
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    folder.mkdir(parents=True, exist_ok=True)
    rows = (megabytes << 20) // (64 * 8)
    X = np.random.default_rng(0).random((rows, 64))
    model = KNeighborsClassifier(algorithm="brute").fit(X, np.arange(rows) % 2)
    del X
    joblib_path = folder / f"knn-{megabytes}mb.joblib"
    joblib.dump(model, joblib_path)
    pickle_path = folder / f"knn-{megabytes}mb.p5.pkl"
    with open(pickle_path, "wb") as fh:
        pickle.dump(model, fh, protocol=5)
    return [(f"{megabytes} MB joblib", joblib_path, 0),
            (f"{megabytes} MB pickle protocol 5", pickle_path, 0)]


# ------------------------------------------------------------------------ verification

LOADERS = {
    "pickle": "import pickle; pickle.load(open(path, 'rb'))",
    "pickle-stream": ("import pickle\nwith open(path, 'rb') as fh:\n    while True:\n"
                      "        try: pickle.load(fh)\n        except EOFError: break"),
    "joblib": "import joblib; joblib.load(path)",
    "skops": ("import skops.io as sio; "
              "sio.load(path, trusted=sio.get_untrusted_types(file=path))"),
}


def _sandbox() -> None:
    """In the child before exec: no core dumps, bounded memory and CPU."""
    resource.setrlimit(resource.RLIMIT_AS, (SANDBOX_MEMORY, SANDBOX_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_TIMEOUT_S, CHILD_TIMEOUT_S))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def verify(path: Path, canary: Path, loader: str,
           acted: Callable[[], bool] | None = None) -> dict:
    """Load `path` with its natural loader in a sandboxed child; did the payload run?
    (`acted`: how to tell, when the payload changes a file rather than creating one.)"""
    if acted is None:
        canary.unlink(missing_ok=True)
    script = f"import warnings; warnings.simplefilter('ignore'); path = {str(path)!r}\n" \
             + LOADERS[loader]
    with tempfile.TemporaryDirectory() as home:
        try:
            proc = subprocess.run([sys.executable, "-c", script], cwd=home, capture_output=True,
                                  text=True, timeout=CHILD_TIMEOUT_S, preexec_fn=_sandbox,
                                  env={**os.environ, "HOME": home})
            outcome = "ok" if proc.returncode == 0 else \
                (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]
        except subprocess.TimeoutExpired:
            outcome = "timeout"
    if acted is not None:
        return {"executed": acted(), "loader_outcome": outcome}
    executed = canary.exists()
    canary.unlink(missing_ok=True)
    return {"executed": executed, "loader_outcome": outcome}


# ------------------------------------------------------------------- attacks, end to end

def _command(args: list[str], cwd: Path) -> int:
    """`persistbench ARGS` in a fresh process (as a user runs it); its exit status."""
    env = {**os.environ, "PERSISTBENCH_CACHE": str(cwd / "cache")}
    proc = subprocess.run([sys.executable, "-m", "persistbench", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=CHILD_TIMEOUT_S * 3)
    return proc.returncode


def check_attack(attack: Payload, path: Path, target: Path, scratch: Path,
                 advise: bool = True) -> dict:
    """One attack end to end: its own loader runs it (unconfined, in a sandboxed child);
    then `persistbench audit` (both stages), `audit --static-only` and `advise` each see
    it, and after each the canary is absent and the victim intact."""
    scratch.mkdir(parents=True, exist_ok=True)
    reset(attack, target)
    loaded = verify(path, target, attack.loader, lambda: took_effect(attack, target))
    reset(attack, target)
    row: dict = {"file": attack.name, "technique": attack.technique,
                 "technique_class": ATTACK_CLASSES[attack.technique], "loader": attack.loader,
                 **loaded}
    steps = [("audit", ["audit", str(path)]), ("static", ["audit", "--static-only", str(path)])]
    if advise:
        steps.append(("advise", ["advise", str(path), "--output", str(scratch / "advise")]))
    for name, args in steps:
        started = time.perf_counter()
        row[f"{name}_exit"] = _command(args, scratch)
        row[f"{name}_s"] = round(time.perf_counter() - started, 2)
        row[f"{name}_took_effect"] = took_effect(attack, target)
        reset(attack, target)
    return row


def run_attacks(folder: Path, advise: bool = True) -> dict:
    """Every attack of `attacks.ATTACKS`, end to end; the summary and one row per file."""
    warnings.simplefilter("ignore")
    written = write_attacks(folder / "attacks", folder / "targets")
    rows = [check_attack(a, path, target, folder / "scratch", advise)
            for a, path, target in written]
    acted = [r["file"] for r in rows if any(r.get(f"{s}_took_effect")
                                            for s in ("audit", "static", "advise"))]
    summary = {
        "attack_files": len(rows),
        "classes_covered": sorted({r["technique"] for r in rows}),
        "ran_under_own_loader": sum(bool(r["executed"]) for r in rows),
        "not_running": [r["file"] for r in rows if not r["executed"]],
        "flagged_by_audit": sum(r["audit_exit"] == 1 for r in rows),
        "missed_by_audit": [r["file"] for r in rows if r["audit_exit"] != 1],
        "flagged_by_static_walk_alone": sum(r["static_exit"] == 1 for r in rows),
        "missed_by_static_walk_alone": [r["file"] for r in rows if r["static_exit"] != 1],
        "refused_by_advise": sum(r.get("advise_exit", 1) != 0 for r in rows),
        "took_effect_during_audit_or_advise": acted,
        "load_average": os.getloadavg(),
    }
    return {"summary": summary, "files": rows}


# ------------------------------------------------------------------------------- audit

def audit_child(paths: list[str]) -> dict:
    """Audit files in this (child) process, with an audit hook watching for payloads."""
    seen: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event.startswith(FORBIDDEN_EVENTS):
            seen.append(f"{event} {str(args)[:120]}")

    sys.addaudithook(hook)
    from persistbench.audit import Unreadable, audit

    results = {}
    for path in paths:
        start = time.perf_counter()
        try:
            report = audit(path)
            status, findings = report.exit_status, [f"{f.kind}: {f.name}" for f in
                                                    report.findings]
        except Unreadable as exc:
            status, findings = 2, [f"not a model file: {exc}"]
        results[path] = {"exit_status": status, "findings": findings[:5],
                         "audit_s": time.perf_counter() - start}
    return {"results": results, "forbidden_events": seen, "peak_rss_bytes": _peak_rss()}


def _peak_rss() -> int:
    """This process's peak resident memory since exec. `ru_maxrss` is not it: on Linux it
    survives exec, so a child forked from a large parent reports the parent's size."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_audit_child(paths: list[Path]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump([str(p) for p in paths], fh)
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.audit_corpus.corpus",
                               "--audit-child", fh.name], cwd=REPOSITORY, capture_output=True,
                              text=True, check=True,
                              timeout=CHILD_TIMEOUT_S * max(1, len(paths) // 10))
    finally:
        os.unlink(fh.name)
    return json.loads(proc.stdout)


def run(folder: Path, large_mb: int = 0) -> dict:
    """Build, verify, audit; the summary the benchmark reports."""
    warnings.simplefilter("ignore")
    benign = write_benign(folder / "benign")
    malicious = write_all(folder / "malicious", folder / "canaries")
    large = write_large(folder / "large", large_mb) if large_mb else []
    verified = {p.name: verify(path, canary, p.loader) for p, path, canary in malicious
                if p.loader}
    audited = _run_audit_child([f for _, f, _ in benign] + [f for _, f, _ in malicious])
    canaries_left = sorted(c.name for _, _, c in malicious if c.exists())
    rows = []
    for name, path, expected in benign:
        r = audited["results"][str(path)]
        rows.append({"file": name, "kind": "benign", "bytes": path.stat().st_size,
                     "expected_exit": expected, **r})
    for payload, path, _ in malicious:
        r = audited["results"][str(path)]
        rows.append({"file": payload.name, "kind": "malicious", "technique": payload.technique,
                     "technique_class": CLASSES[payload.technique], "loader": payload.loader,
                     "bytes": path.stat().st_size, "expected_exit": 1,
                     **verified.get(payload.name, {}), **r})
    for name, path, _ in large:
        child = _run_audit_child([path])
        r = child["results"][str(path)]
        rows.append({"file": name, "kind": "large", "bytes": path.stat().st_size,
                     "expected_exit": 0, "peak_rss_bytes": child["peak_rss_bytes"], **r})
    mal = [r for r in rows if r["kind"] == "malicious"]
    ben = [r for r in rows if r["kind"] != "malicious"]
    summary = {
        "benign_files": len(ben),
        "benign_as_expected": sum(r["exit_status"] == r["expected_exit"] for r in ben),
        "false_alarms": [r["file"] for r in ben if r["exit_status"] != r["expected_exit"]],
        "malicious_files": len(mal),
        "malicious_with_payload": sum(1 for r in mal if r.get("loader")),
        "malicious_verified_executing": sum(1 for r in mal if r.get("executed")),
        "malicious_not_executing": [r["file"] for r in mal if r.get("loader")
                                    and not r.get("executed")],
        "malicious_flagged": sum(r["exit_status"] == 1 for r in mal),
        "malicious_missed": [r["file"] for r in mal if r["exit_status"] != 1],
        "techniques_covered": sorted({r["technique"] for r in mal}),
        "audit_forbidden_events": audited["forbidden_events"],
        "canaries_after_audit": canaries_left,
        "audit_child_peak_rss_bytes": audited["peak_rss_bytes"],
        "load_average": os.getloadavg(),
    }
    return {"summary": summary, "files": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_corpus.corpus",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="where to build the corpus (default: a "
                        "temporary folder, removed afterwards)")
    parser.add_argument("--large-mb", type=int, default=0,
                        help="also audit a model of this many MB (joblib and pickle)")
    parser.add_argument("--output", type=Path, help="write the full results as JSON")
    parser.add_argument("--attacks", action="store_true",
                        help="only the white-box attacks, end to end through the command "
                             "line (audit, audit --static-only, advise)")
    parser.add_argument("--audit-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.audit_child:
        print(json.dumps(audit_child(json.loads(args.audit_child.read_text()))))
        return 0
    if args.attacks:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_attacks(args.folder or Path(tmp))
        if args.output:
            args.output.write_text(json.dumps(result, indent=1))
        print(json.dumps(result["summary"], indent=1))
        summary = result["summary"]
        return 0 if not (summary["not_running"] or summary["missed_by_audit"]
                         or summary["took_effect_during_audit_or_advise"]) else 1
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.folder or Path(tmp), args.large_mb)
    if args.output:
        args.output.write_text(json.dumps(result, indent=1))
    summary = result["summary"]
    print(json.dumps(summary, indent=1))
    for row in result["files"]:
        if row["kind"] == "large":
            print(f"{row['file']}: {row['bytes'] / 1e6:.0f} MB audited in "
                  f"{row['audit_s']:.2f} s, child peak RSS {row['peak_rss_bytes'] / 1e6:.0f} MB")
    ok = (not summary["false_alarms"] and not summary["malicious_missed"]
          and not summary["audit_forbidden_events"] and not summary["canaries_after_audit"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
