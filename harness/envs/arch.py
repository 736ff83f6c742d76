"""Debian root filesystems of other CPU architectures, and how to run their python3.

Whether a file saved on one CPU loads on another can only be seen with a real interpreter of
the other CPU and the same library versions on both sides. Debian builds the same versions
of python3, NumPy, SciPy, scikit-learn, joblib and cloudpickle for amd64, i386, arm64 and
s390x, so one tree per architecture (`mmdebstrap --variant=extract`: the packages and their
dependencies unpacked, no maintainer script run, so no emulator is needed to build) gives
both sides of the comparison. The home side is the amd64 tree, never this harness's own
interpreter: its versions would differ from the other trees'.

Each tree's python3 runs directly from the host, so every host path (the harness source,
the files to load) means the same inside: x86 trees through the tree's own dynamic loader
(natively; i386 under `setarch i686`), the others under `qemu-<cpu>-static -L TREE` (user
mode emulation, no binfmt or root needed). Unpacked, not installed, a tree lacks the
alternatives links to OpenBLAS, so the loader path names its directory; and its modules are
compiled once after the build (by the home tree's interpreter: bytecode does not depend on
the CPU), or every emulated import would compile them again.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from persistbench.envs.builder import build_reason
from persistbench.sources.models import UsageError, cache_dir

SUITE = "bookworm"
PACKAGES = ("python3-sklearn", "python3-joblib", "python3-cloudpickle")
# The release's own archive only: one source, the same for every tree (the security and
# updates archives add downloads that can fail mid-sync and versions that move).
MIRROR = f"deb http://deb.debian.org/debian {SUITE} main"
TREE_BYTES = 0.9e9  # what one tree of PACKAGES takes once unpacked (measured: 0.69-0.82 GB)
BUILD_TIMEOUT_S = 1200.0
READY = "ready.json"
HOME = "amd64"
EMULATED_CPU = "max"  # qemu's `-cpu`: every feature it emulates, named so results can say
# One thread for OpenMP and OpenBLAS on every side. Under emulation, OpenMP's threads wait
# for each other through the emulator (measured: a HistGradientBoosting predict of 500 rows
# on arm64 took 0.2 s with two threads and 0.009 s with one); natively on a shared machine
# they wait for a busy core. Both sides run the same, so thread count is not a difference.
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# What a tree's interpreter says about itself: its distributions and its CPU.
DESCRIBE = ("import json, platform, sys, importlib.metadata as m; print(json.dumps({"
            "'packages': {d.metadata['Name'].lower(): d.version for d in m.distributions()}, "
            "'machine': platform.machine(), 'byteorder': sys.byteorder, "
            "'python_version': platform.python_version(), "
            "'pointer_bits': 64 if sys.maxsize > 2**32 else 32}))")


@dataclass(frozen=True)
class Arch:
    """One Debian architecture: where its libraries live and how its programs run here."""

    name: str
    triplet: str
    loader: str  # the dynamic loader, relative to the tree's root
    qemu: str | None  # the user-mode emulator; None: runs natively on an x86_64 host
    setarch: str | None = None  # the personality a native run takes (`uname -m` inside)


ARCHES = {a.name: a for a in (
    Arch("amd64", "x86_64-linux-gnu", "lib64/ld-linux-x86-64.so.2", None),
    Arch("i386", "i386-linux-gnu", "lib/ld-linux.so.2", None, setarch="i686"),
    Arch("arm64", "aarch64-linux-gnu", "lib/ld-linux-aarch64.so.1", "qemu-aarch64-static"),
    Arch("s390x", "s390x-linux-gnu", "lib/ld64.so.1", "qemu-s390x-static"),
)}


@dataclass
class Tree:
    """A built architecture tree and its interpreter, or why there is none."""

    arch: str
    python: list[str] | None  # the argv prefix that runs the tree's python3
    source: str  # "cached", "built" or "failed"
    route: str = "native"  # "native" or "emulated"
    emulator: str | None = None  # "qemu-aarch64-static 7.2.19 -cpu max"
    launch_env: dict[str, str] | None = None  # what the interpreter's environment adds
    reason: str | None = None
    packages: dict[str, str] | None = None
    build_s: float | None = None
    disk_bytes: int | None = None
    machine: str | None = None  # platform.machine() inside
    byteorder: str | None = None
    pointer_bits: int | None = None
    python_version: str | None = None
    stack: str = SUITE  # the libraries' source: Debian's packages, or "wheels" (envs.wheels)
    home: str | None = None  # the directory holding its libraries and its model cache

    @property
    def ok(self) -> bool:
        return self.python is not None

    @property
    def key(self) -> str:
        """How cells name it: the architecture, with the stack when it is not Debian's."""
        return self.arch if self.stack == SUITE else f"{self.arch}+{self.stack}"

    def as_env(self) -> dict:
        """The shape `persistbench.envs.server.running` and the experiments read. Each tree
        trains into its own model cache: the cache key names versions, not CPUs, and a model
        another architecture trained would be a cross-architecture load before the cell."""
        launch = {**THREADS, **(self.launch_env or {}),
                  "PERSISTBENCH_CACHE": self.home or str(tree_dir(self.arch))}
        return {**asdict(self), "key": self.key, "launch_env": launch,
                "sklearn": (self.packages or {}).get("scikit-learn", "?")}


def trees_root() -> Path:
    """Beside the model cache and the version environments, never in the repository."""
    return cache_dir().parent / "arch-trees"


def tree_dir(arch: str) -> Path:
    return trees_root() / f"{SUITE}-{arch}"


def parse_arches(text: str) -> list[str]:
    """`--arch i386,arm64`: known foreign architectures, in the order given."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    foreign = [a for a in ARCHES if a != HOME]
    for name in names:
        if name not in foreign:
            raise UsageError(f"--arch {name!r}: expected some of {', '.join(foreign)}")
    if not names:
        raise UsageError(f"--arch: name at least one of {', '.join(foreign)}")
    return list(dict.fromkeys(names))


def missing_tools(arches: list[str]) -> str | None:
    """Why this platform cannot run these architectures' trees, in one line; None if it can."""
    host = f"{platform.system()} {platform.machine()}"
    if host != "Linux x86_64":
        return (f"portability runs Debian trees natively on an x86_64 Linux host; this is "
                f"{host}")
    needed = [] if all((tree_dir(a) / READY).exists() for a in [HOME, *arches]) else [
        "mmdebstrap"]
    needed += [ARCHES[a].qemu for a in arches if ARCHES[a].qemu]
    needed += ["setarch" for a in arches if ARCHES[a].setarch][:1]
    absent = [tool for tool in needed if not shutil.which(tool)]
    if absent:
        return (f"portability needs {', '.join(absent)} (Debian: apt-get install mmdebstrap "
                "qemu-user-static)")
    return None


def _library_path(root: Path, arch: Arch) -> str:
    lib = [root / "lib" / arch.triplet, root / "usr/lib" / arch.triplet]
    return ":".join(str(p) for p in [*lib, lib[1] / "openblas-pthread"])


def _emulator_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=60)
    words = out.stdout.split()
    return words[2] if len(words) > 2 else "?"


def launcher(arch_name: str, root: Path, python_path: Path | None = None
             ) -> tuple[list[str], dict[str, str], str, str | None]:
    """The argv prefix running the tree's python3 (or `python_path`, a virtual environment's
    link to it), what its environment adds, its route and the emulator (with the CPU model
    it emulates) when there is one."""
    arch = ARCHES[arch_name]
    python = str(python_path or root / "usr/bin/python3")
    env = {"LD_LIBRARY_PATH": _library_path(root, arch)}
    if arch.qemu:
        emulator = f"{arch.qemu} {_emulator_version(arch.qemu)} -cpu {EMULATED_CPU}"
        return ([shutil.which(arch.qemu) or arch.qemu, "-cpu", EMULATED_CPU, "-L", str(root),
                 python], env, "emulated", emulator)
    prefix = [shutil.which("setarch") or "setarch", arch.setarch] if arch.setarch else []
    return [*prefix, str(root / arch.loader), python], env, "native", None


def _describe(prefix: list[str], env: dict[str, str]) -> dict:
    """Versions and CPU facts as the tree's interpreter reports them."""
    proc = subprocess.run([*prefix, "-I", "-c", DESCRIBE], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})
    if proc.returncode:
        raise RuntimeError(f"the tree's python3 failed: {build_reason(proc.stderr)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def disk_bytes(path: Path) -> int:
    """Bytes the tree takes on disk (blocks, not apparent sizes)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def read_ready(ready: Path) -> Tree:
    """A tree recorded when it was built, now reused."""
    known = {f.name for f in fields(Tree)}
    cached = Tree(**{k: v for k, v in json.loads(ready.read_text()).items() if k in known})
    cached.source = "cached"
    return cached


def described(arch: str, python_path: Path | None, ready: Path, started: float,
              **extra) -> Tree:
    """A newly built tree (or stack) as its interpreter describes itself, recorded in
    `ready` for the next run."""
    prefix, env, route, emulator = launcher(arch, tree_dir(arch), python_path)
    facts = _describe(prefix, env)
    built = Tree(arch, prefix, "built", route, emulator, env, packages=facts["packages"],
                 build_s=time.monotonic() - started, disk_bytes=disk_bytes(ready.parent),
                 machine=facts["machine"], byteorder=facts["byteorder"],
                 pointer_bits=facts["pointer_bits"],
                 python_version=facts["python_version"], **extra)
    ready.write_text(json.dumps(asdict(built), indent=1))
    return built


def _compile(directory: Path, home_python: list[str], env: dict[str, str]) -> None:
    """Bytecode for every module of the tree, written once by the home interpreter."""
    targets = [str(p) for p in (directory / "usr/lib/python3/dist-packages",
                                *directory.glob("usr/lib/python3.*")) if p.is_dir()]
    subprocess.run([*home_python, "-I", "-m", "compileall", "-q", "-j0", *targets],
                   capture_output=True, timeout=BUILD_TIMEOUT_S, env={**os.environ, **env})


def build_into(cmd: list[str], scratch: Path, directory: Path, tool: str) -> str | None:
    """Run a build that writes `scratch`, then move it to `directory` in one rename, so a
    cached tree is always whole; on failure remove it and return the tool's stderr."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError(f"{tool} took more than {BUILD_TIMEOUT_S:g} s") from exc
    if proc.returncode:
        shutil.rmtree(scratch, ignore_errors=True)
        return proc.stderr
    os.replace(scratch, directory)
    return None

def _build(arch: str, directory: Path, say) -> None:
    """mmdebstrap into a scratch directory beside the tree, renamed into place when whole."""
    scratch = directory.with_name(directory.name + ".building")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)
    free = shutil.disk_usage(directory.parent).free
    say(f"{arch}: building the Debian {SUITE} tree in {directory} (about "
        f"{TREE_BYTES / 1e9:.1f} GB; {free / 1e9:.1f} GB free there)")
    if free < 1.5 * TREE_BYTES:
        raise RuntimeError(f"not enough disk space in {directory.parent}: "
                           f"{free / 1e9:.1f} GB free, a tree needs about "
                           f"{TREE_BYTES / 1e9:.1f} GB")
    cmd = ["mmdebstrap", "--quiet", "--variant=extract", f"--arch={arch}",
           f"--include={','.join(PACKAGES)}", SUITE, str(scratch), MIRROR]
    stderr = build_into(cmd, scratch, directory, "mmdebstrap")
    if stderr is not None:
        errors = [ln[2:].strip() for ln in stderr.splitlines() if ln.startswith("E:")]
        raise RuntimeError(f"mmdebstrap: {errors[0] if errors else build_reason(stderr)}")


def tree(arch: str, rebuild: bool = False, say=print, home: Tree | None = None) -> Tree:
    """The tree of one architecture, cached or built (`home`, the amd64 tree, compiles the
    new tree's modules; the amd64 tree compiles its own)."""
    from filelock import FileLock

    directory = tree_dir(arch)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(directory.with_name(directory.name + ".lock")):
        ready = directory / READY
        if ready.exists() and not rebuild:
            return read_ready(ready)
        start = time.monotonic()
        try:
            _build(arch, directory, say)
            prefix, env, _, _ = launcher(arch, directory)
            compiler = (home.python, home.launch_env) if home and home.ok else (prefix, env)
            _compile(directory, *compiler)
            return described(arch, None, ready, start)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
            return Tree(arch, None, "failed", reason=str(exc))


def summary(made: Tree) -> str:
    """One line on a tree: cached or built (in how long), its size and how it runs."""
    size = f", {made.disk_bytes / 1e9:.2f} GB" if made.disk_bytes else ""
    took = f" in {made.build_s:.0f} s" if made.source == "built" else ""
    return (f"{made.key}: {made.source}{took}{size}, {made.route}"
            + (f" ({made.emulator})" if made.emulator else "")
            + (f": {made.reason}" if made.reason else ""))


def prepare(arches: list[str], rebuild: bool = False, say=print) -> list[Tree]:
    """The home tree, then each foreign one; built before any cell runs (not measured)."""
    trees: list[Tree] = []
    for arch in [HOME, *arches]:
        made = tree(arch, rebuild=rebuild, say=say, home=trees[0] if trees else None)
        say(summary(made))
        trees.append(made)
    return trees
