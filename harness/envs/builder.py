"""The environment builder: one isolated Python environment per scikit-learn version.

A model saved with scikit-learn A and loaded with B can only be observed with A and B each in
its own interpreter. Each environment is a virtual environment holding `scikit-learn==V` and
the serializer libraries left unpinned, so the resolver picks versions that declare themselves
compatible with V. It is built with uv (`uv venv` + `uv pip install`, which reuses its download
cache and installs in seconds) when the `uv` package is installed, else with `python -m venv` +
pip; which builder made it and how long it took are recorded. Environments are cached outside
the repository (beside the model cache) and reused between runs; one that cannot be built is
reported with the builder's own reason, never retried silently with other versions.

The harness code reaches an environment through a directory holding only a link to the
`persistbench` package, put first on `sys.path` by the interpreter's command line: the environment
always runs the current source, and never sees the harness's own site-packages (which
`PYTHONPATH=<parent of harness>` would expose when the package is installed, not linked).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

from persistbench.results.vocabulary import REPORTED_LIBRARIES as REPORTED
from persistbench.results.vocabulary import SERIALIZERS
from persistbench.sources.models import UsageError, cache_dir

# What every environment needs besides scikit-learn: the serializers (SERIALIZERS) and what
# the zoo's builders import. Unpinned on purpose: the resolver picks what fits the
# scikit-learn.
# scikit-learn wheels before 1.4.2 were built against NumPy 1 and break on NumPy 2.
NUMPY2_FROM = (1, 4, 2)
BUILD_TIMEOUT_S = 1800.0
READY = "ready.json"
VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
# What an environment's interpreter prints: every installed distribution and its version
# (a uv-built environment has no pip to ask).
FREEZE = ("import json, importlib.metadata as m; "
          "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))")


@dataclass
class Environment:
    """Where a scikit-learn version runs, or why it cannot."""

    sklearn: str  # the exact version (`resolve_versions` turned X.Y into X.Y.Z)
    python: str | None  # interpreter path; None when the environment could not be built
    source: str  # "harness" (this interpreter), "cached", "built" or "failed"
    reason: str | None = None
    packages: dict[str, str] | None = None
    build_s: float | None = None
    builder: str | None = None  # "uv 0.9.2" or "pip 25.1": what built it
    requirements: list[str] | None = None  # what was installed, when built from a requirement set

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
                         f"({build_reason(proc.stderr) or 'no answer'}); "
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


def build_reason(stderr: str) -> str:
    """The builder's own explanation: pip's ERROR lines or uv's error report, else the last
    line it printed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR:", "error:", "×", "╰─▶"))]
    return " ".join(errors)[:600] if errors else (lines[-1][:600] if lines else "")


def env_python(directory: Path) -> Path:
    return directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _env_dir(sklearn: str) -> Path:
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return envs_root() / f"sklearn-{sklearn}-py{py}"


def _freeze(python: Path) -> dict[str, str]:
    proc = subprocess.run([str(python), "-I", "-c", FREEZE], capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(proc.stdout)


def _uv() -> str | None:
    """The uv binary shipped by the `uv` package, if it is installed."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return None


def _build_steps(reqs: list[str], directory: Path) -> tuple[str, list[list[str]]]:
    """The builder's name and version, and its commands for one environment."""
    python = str(env_python(directory))
    uv = _uv()
    if uv:
        label = subprocess.run([uv, "--version"], capture_output=True, text=True,
                               timeout=60).stdout.split()[:2]
        return " ".join(label) or "uv", [
            [uv, "venv", "--quiet", "--python", sys.executable, str(directory)],
            [uv, "pip", "install", "--quiet", "--python", python, *reqs]]
    return f"pip {installed_version('pip')}", [
        [sys.executable, "-m", "venv", str(directory)],
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *reqs]]


def _build(label: str, reqs: list[str], directory: Path) -> Environment:
    """Build a venv holding `reqs`; `label` names it in the record (a scikit-learn version,
    or the requirement set)."""
    start = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    builder, steps = _build_steps(reqs, directory)
    for cmd in steps:
        what = "venv" if "venv" in cmd else f"{builder} install " + " ".join(reqs)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            shutil.rmtree(directory, ignore_errors=True)
            return Environment(label, None, "failed",
                               f"{what} took more than {BUILD_TIMEOUT_S:g} s", builder=builder,
                               requirements=reqs)
        if proc.returncode:
            shutil.rmtree(directory, ignore_errors=True)
            return Environment(label, None, "failed",
                               f"{what}: {build_reason(proc.stderr) or proc.returncode}",
                               builder=builder, requirements=reqs)
    python = env_python(directory)
    packages = _freeze(python)
    env = Environment(packages.get("scikit-learn", label), str(python), "built",
                      packages=packages, build_s=time.monotonic() - start, builder=builder,
                      requirements=reqs)
    (directory / READY).write_text(json.dumps(env.as_dict(), indent=1))
    return env


def _cached_or_built(label: str, reqs: list[str], directory: Path,
                     rebuild: bool) -> Environment:
    from filelock import FileLock  # here: the environments import this module without it

    # One builder per environment, even across concurrent persistbench processes.
    with FileLock(directory.with_name(directory.name + ".lock")):
        ready = directory / READY
        if ready.exists() and not rebuild and env_python(directory).exists():
            known = {f.name for f in fields(Environment)}
            env = Environment(**{k: v for k, v in json.loads(ready.read_text()).items()
                                 if k in known})
            env.source = "cached"
            return env
        return _build(label, reqs, directory)


def environment(sklearn: str, rebuild: bool = False) -> Environment:
    """The environment for one exact scikit-learn version: this interpreter when it already
    runs that version, else a cached or freshly built venv."""
    if sklearn == harness_sklearn():
        from persistbench.measure.machine import package_versions

        return Environment(sklearn, sys.executable, "harness",
                           packages=package_versions(REPORTED))
    return _cached_or_built(sklearn, requirements(sklearn), _env_dir(sklearn), rebuild)


def _requirement_name(req: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    if not match:
        raise UsageError(f"{req!r} is not a requirement; expected e.g. joblib==1.5.3")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


# What the harness's timers and memory readings import inside an environment that measures
# (`persistbench ab`), besides the measured stack.
MEASURING = ("psutil",)


def pinned_requirements(requested: list[str]) -> list[str]:
    """The requested requirements, and every other library of the measured stack (and what
    measuring needs) pinned to the version this interpreter runs: two sides then differ
    only in what the user named."""
    named = {_requirement_name(r) for r in requested}
    pins = []
    for lib in (*REPORTED, *MEASURING):
        if lib in named:
            continue
        try:
            pins.append(f"{lib}=={installed_version(lib)}")
        except PackageNotFoundError:  # not installed here (an extra): left out, as here
            continue
    return [*requested, *pins]


def requirement_environment(requested: list[str], rebuild: bool = False) -> Environment:
    """A cached or freshly built venv holding `requested` (e.g. `joblib==1.5.3`) and the rest
    of the stack as this interpreter has it."""
    reqs = pinned_requirements(requested)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(json.dumps(sorted(reqs)).encode()).hexdigest()[:12]
    return _cached_or_built(" ".join(requested), reqs,
                            envs_root() / f"reqs-{digest}-py{py}", rebuild)


def given_environment(path: Path) -> Environment:
    """An existing interpreter (a venv's directory or its python), as it is: its packages
    are read, nothing is installed."""
    path = Path(path)
    python = env_python(path) if path.is_dir() else path
    if not python.is_file() or not os.access(python, os.X_OK):
        raise UsageError(f"{path}: not a Python interpreter or a venv directory holding one")
    try:
        packages = _freeze(python)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot list its packages ({exc}); is it a Python 3 "
                         "interpreter?") from None
    missing = [lib for lib in ("scikit-learn", *MEASURING) if lib not in packages]
    if missing:
        raise UsageError(f"{path}: {', '.join(missing)} not installed in that environment; "
                         f"install {'them' if len(missing) > 1 else 'it'} there first")
    return Environment(packages["scikit-learn"], str(python), "given", packages=packages)


def link_dir() -> Path:
    """A directory holding only `persistbench` (a link to this package's source folder), for
    environments' sys.path."""
    import persistbench

    package = Path(persistbench.__file__).resolve().parent
    # One link per source tree: two checkouts sharing a cache must not redirect each other.
    tag = hashlib.sha256(str(package).encode()).hexdigest()[:12]
    target = envs_root() / "persistbench-link" / tag
    link = target / "persistbench"
    target.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == package):
        tmp = target / f".persistbench.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(package, target_is_directory=True)
        os.replace(tmp, link)
    return target


def prepare(versions: list[str], rebuild: bool = False, say=print) -> list[Environment]:
    """Every environment of a matrix, built before any cell runs (building is not measured)."""
    envs = []
    for sklearn in versions:
        say(f"scikit-learn {sklearn}: preparing environment ...")
        env = environment(sklearn, rebuild=rebuild)
        built = f" by {env.builder} in {env.build_s:.0f} s" if env.build_s is not None else ""
        say(f"scikit-learn {sklearn}: {env.source}{built}"
            + (f" ({env.reason})" if env.reason else ""))
        envs.append(env)
    return envs
