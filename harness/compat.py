"""Isolated Python environments, one per scikit-learn version, for the cross-version matrix.

A model saved with scikit-learn A and loaded with B can only be observed with A and B each in
its own interpreter. Each environment is a plain `python -m venv` filled by pip with
`scikit-learn==V` and the serializer libraries left unpinned, so pip's resolver picks versions
that declare themselves compatible with V. Environments are cached outside the repository
(beside the model cache) and reused between runs; one that cannot be built is reported with
pip's own reason, never retried silently with other versions.

The harness code reaches an environment through a directory holding only a link to the
`harness` package, put first on `sys.path` by the interpreter's command line: the environment
always runs the current source, and never sees the harness's own site-packages (which
`PYTHONPATH=<parent of harness>` would expose when the package is installed, not linked).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from importlib.metadata import version as installed_version
from pathlib import Path

from harness.models import UsageError, cache_dir

# What every environment needs besides scikit-learn: the serializers of harness.formats and
# what the zoo's builders import. Unpinned on purpose: pip picks what fits the scikit-learn.
SERIALIZERS = ("joblib", "cloudpickle", "skops", "skl2onnx", "onnx", "onnxruntime", "lz4")
# Packages whose versions each side of a cell reports (the ones that can change a load).
REPORTED = ("scikit-learn", "numpy", "scipy", *SERIALIZERS)
# scikit-learn wheels before 1.4.2 were built against NumPy 1 and break on NumPy 2.
NUMPY2_FROM = (1, 4, 2)
PIP_TIMEOUT_S = 1800.0
READY = "ready.json"
VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")


@dataclass
class Environment:
    """Where a scikit-learn version runs, or why it cannot."""

    sklearn: str  # the exact version (`resolve_versions` turned X.Y into X.Y.Z)
    python: str | None  # interpreter path; None when the environment could not be built
    source: str  # "harness" (this interpreter), "cached", "built" or "failed"
    reason: str | None = None
    packages: dict[str, str] | None = None
    build_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.python is not None

    def as_dict(self) -> dict:
        return asdict(self)


def envs_root() -> Path:
    """Beside the model cache, so PERSISTBENCH_CACHE moves both (CI keeps them in the clone)."""
    return cache_dir().parent / "venvs"


def _parse(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def harness_sklearn() -> str:
    return installed_version("scikit-learn")


def available_versions() -> list[str]:
    """Final scikit-learn releases pip can install on this interpreter, newest first."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "scikit-learn",
         "--disable-pip-version-check"], capture_output=True, text=True, timeout=120)
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    if proc.returncode or not match:
        raise UsageError("cannot list scikit-learn releases with pip "
                         f"({pip_reason(proc.stderr) or 'no answer'}); "
                         "pass exact versions, e.g. --sklearn 1.8.0,1.9.1")
    found = [v.strip() for v in match.group(1).split(",")]
    return [v for v in found if re.fullmatch(r"\d+\.\d+\.\d+", v)]


def _latest_of_minor(minor: str, versions: list[str]) -> str | None:
    return next((v for v in versions if v.startswith(f"{minor}.")), None)


def resolve_versions(specs: list[str] | None) -> list[str]:
    """Exact versions for `--sklearn`: `X.Y.Z` as given, `X.Y` as its latest patch release.

    Without specs: the installed version and the latest patch of each of the two previous
    minor releases pip offers for this Python.
    """
    for spec in specs or []:
        if not VERSION_RE.match(spec):
            raise UsageError(f"--sklearn {spec!r}: expected versions like 1.8 or 1.8.0")
    if specs and all(spec.count(".") == 2 for spec in specs):
        return list(dict.fromkeys(specs))
    versions = available_versions()
    if specs:
        out = []
        for spec in specs:
            exact = spec if spec.count(".") == 2 else _latest_of_minor(spec, versions)
            if exact is None:
                raise UsageError(f"--sklearn {spec}: pip offers no {spec}.x release for this "
                                 f"Python; available: {', '.join(versions[:12])}, ...")
            out.append(exact)
        return list(dict.fromkeys(out))
    installed = harness_sklearn()
    minors = list(dict.fromkeys(".".join(v.split(".")[:2]) for v in versions))
    current = ".".join(installed.split(".")[:2])
    older = [m for m in minors if _parse(m) < _parse(current)][:2]
    return [*(_latest_of_minor(m, versions) for m in reversed(older)), installed]


def requirements(sklearn: str) -> list[str]:
    reqs = [f"scikit-learn=={sklearn}", "numpy", "scipy", *SERIALIZERS]
    if _parse(sklearn) < NUMPY2_FROM:
        reqs[1] = "numpy<2"
    return reqs


def pip_reason(stderr: str) -> str:
    """pip's own explanation: its ERROR lines, else the last line it printed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return " ".join(errors)[:600] if errors else (lines[-1][:600] if lines else "")


def env_python(directory: Path) -> Path:
    return directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _env_dir(sklearn: str) -> Path:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return envs_root() / f"sklearn-{sklearn}-py{py}"


@contextlib.contextmanager
def _locked(path: Path):
    """One builder per environment, even across concurrent persistbench processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _freeze(python: Path) -> dict[str, str]:
    proc = subprocess.run([str(python), "-m", "pip", "list", "--format", "json",
                           "--disable-pip-version-check"], capture_output=True, text=True,
                          check=True, timeout=120)
    return {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)}


def _build(sklearn: str, directory: Path) -> Environment:
    start = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(directory)],
        [str(env_python(directory)), "-m", "pip", "install", "--disable-pip-version-check",
         "--no-input", *requirements(sklearn)],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            shutil.rmtree(directory, ignore_errors=True)
            return Environment(sklearn, None, "failed",
                               f"{cmd[2]} took more than {PIP_TIMEOUT_S:g} s")
        if proc.returncode:
            shutil.rmtree(directory, ignore_errors=True)
            what = "venv" if cmd[2] == "venv" else "pip install " + " ".join(cmd[6:])
            return Environment(sklearn, None, "failed",
                               f"{what}: {pip_reason(proc.stderr) or proc.returncode}")
    python = env_python(directory)
    env = Environment(sklearn, str(python), "built", packages=_freeze(python),
                      build_s=time.monotonic() - start)
    (directory / READY).write_text(json.dumps(env.as_dict(), indent=1))
    return env


def environment(sklearn: str, rebuild: bool = False) -> Environment:
    """The environment for one exact scikit-learn version: this interpreter when it already
    runs that version, else a cached or freshly built venv."""
    if sklearn == harness_sklearn():
        from harness.machine import package_versions

        return Environment(sklearn, sys.executable, "harness",
                           packages=package_versions(REPORTED))
    directory = _env_dir(sklearn)
    with _locked(directory.with_name(directory.name + ".lock")):
        ready = directory / READY
        if ready.exists() and not rebuild and env_python(directory).exists():
            known = {f.name for f in fields(Environment)}
            env = Environment(**{k: v for k, v in json.loads(ready.read_text()).items()
                                 if k in known})
            env.source = "cached"
            return env
        return _build(sklearn, directory)


def link_dir() -> Path:
    """A directory holding only `harness` (a link to this package), for environments' sys.path."""
    import harness

    package = Path(harness.__file__).resolve().parent
    # One link per source tree: two checkouts sharing a cache must not redirect each other.
    tag = hashlib.sha256(str(package).encode()).hexdigest()[:12]
    target = envs_root() / "harness-link" / tag
    link = target / "harness"
    target.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == package):
        tmp = target / f".harness.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(package, target_is_directory=True)
        os.replace(tmp, link)
    return target


def run_in_env(python: str, function: str, args: dict) -> subprocess.CompletedProcess:
    """Run `harness.<module>:<function>(args)` in another interpreter, isolated from the user's
    environment variables and site directory; the answer travels in a file named by args."""
    module, _, name = function.partition(":")
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); "
            f"from {module} import {name}; {name}(json.loads(sys.argv[2]))")
    return subprocess.run([python, "-I", "-c", code, str(link_dir()), json.dumps(args)],
                          capture_output=True, text=True)


def prepare(versions: list[str], rebuild: bool = False, say=print) -> list[Environment]:
    """Every environment of a matrix, built before any cell runs (building is not measured)."""
    envs = []
    for sklearn in versions:
        say(f"scikit-learn {sklearn}: preparing environment ...")
        env = environment(sklearn, rebuild=rebuild)
        say(f"scikit-learn {sklearn}: {env.source}" + (f" ({env.reason})" if env.reason else ""))
        envs.append(env)
    return envs


def run_matrix(models: list[str], formats: list[str], versions: list[str], run_options,
               rebuild: bool = False) -> dict:
    """Build the environments, then measure every (A->B, model, format) cell through the runner
    (`run_options` is a `harness.runner.RunOptions`); the files saved with each A live in a
    scratch directory of this run only."""
    import tempfile

    from harness.experiments import compat as experiment
    from harness.runner import run

    envs = [e.as_dict() for e in prepare(versions, rebuild=rebuild)]
    output = run_options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".persistbench-compat-", dir=output.parent))
    plan_options = {"seed": run_options.seed, "environments": envs,
                    "artefacts_dir": str(scratch)}
    try:
        results = run(experiment.plan(models, ["small"], formats, plan_options), run_options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results.data["run"]["compat_environments"] = envs
    results.flush()
    return results.data
