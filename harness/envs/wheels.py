"""The current scikit-learn stack beside Debian's, where the package index has its wheels.

Debian bookworm holds scikit-learn 1.2.1; the files users have come from today's releases.
The package index builds current scikit-learn, NumPy and SciPy wheels for aarch64 and x86_64
(tag manylinux_2_28), none for i386 or s390x: so arm64 gets a second column. pip, run from
the host, installs the other platform's wheels (`--platform manylinux_2_28_aarch64
--only-binary=:all: --target`) into a virtual-environment layout around the tree's own
python3 (`pyvenv.cfg` naming the tree's interpreter, Debian's modules left out), so the
interpreter is the same 3.11 on both sides. arm64 resolves the newest releases; amd64, the
home side, installs exactly the versions arm64 got, pinned, so both sides always match.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import time
from pathlib import Path

from persistbench.envs.arch import (
    HOME,
    READY,
    Tree,
    build_into,
    described,
    read_ready,
    summary,
    tree_dir,
    trees_root,
)
from persistbench.envs.builder import build_reason

STACK = "wheels"
PLATFORMS = {"amd64": "manylinux_2_28_x86_64", "arm64": "manylinux_2_28_aarch64"}
REQUIREMENTS = ("scikit-learn", "numpy", "scipy", "joblib", "cloudpickle", "threadpoolctl")
STACK_BYTES = 0.35e9  # one platform's wheels once installed (measured: 0.29 GB for aarch64)


def stack_dir(arch: str) -> Path:
    return trees_root() / f"{STACK}-{arch}"


def installed(site: Path) -> dict[str, str]:
    """Every distribution pip put in `site`, by its normalised name."""
    return {d.metadata["Name"].lower(): d.version
            for d in importlib.metadata.distributions(path=[str(site)])}


def _install(base: Tree, directory: Path, pins: dict[str, str] | None) -> None:
    """The layout around the tree's python3, then pip into its site-packages; renamed into
    place when whole."""
    scratch = directory.with_name(directory.name + ".building")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)
    minor = ".".join((base.python_version or "3.11").split(".")[:2])
    site = scratch / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True)
    (scratch / "bin").mkdir()
    interpreter = tree_dir(base.arch) / "usr/bin"
    (scratch / "bin/python3").symlink_to(interpreter / "python3")
    (scratch / "pyvenv.cfg").write_text(f"home = {interpreter}\ninclude-system-site-packages"
                                        f" = false\nversion = {base.python_version}\n")
    requirements = [f"{n}=={v}" for n, v in pins.items()] if pins else list(REQUIREMENTS)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-input", "--target", str(site), "--platform", PLATFORMS[base.arch],
           "--python-version", minor, "--implementation", "cp",
           "--abi", f"cp{minor.replace('.', '')}", "--only-binary=:all:", *requirements]
    stderr = build_into(cmd, scratch, directory, "pip")
    if stderr is not None:
        raise RuntimeError(f"pip: {build_reason(stderr)}")


def stack(base: Tree, pins: dict[str, str] | None = None, rebuild: bool = False,
          say=print) -> Tree:
    """The current stack around `base` (a built tree), cached, or installed: the newest
    releases, or exactly `pins` (a cached stack holding other versions is reinstalled)."""
    from filelock import FileLock

    directory = stack_dir(base.arch)
    if not base.ok:
        return Tree(base.arch, None, "failed", stack=STACK, home=str(directory),
                    reason=f"no {base.arch} tree: {base.reason}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(directory.with_name(directory.name + ".lock")):
        ready = directory / READY
        if ready.exists() and not rebuild:
            cached = read_ready(ready)
            if not pins or cached.packages == pins:
                return cached
        free = shutil.disk_usage(directory.parent).free
        what = ", ".join(f"{n} {v}" for n, v in pins.items()) if pins else "the newest releases"
        say(f"{base.arch}: installing {PLATFORMS[base.arch]} wheels ({what}) in {directory} "
            f"(about {STACK_BYTES / 1e9:.2f} GB; {free / 1e9:.1f} GB free there)")
        start = time.monotonic()
        try:
            _install(base, directory, pins)
            return described(base.arch, directory / "bin/python3", ready, start, stack=STACK,
                             home=str(directory))
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
            return Tree(base.arch, None, "failed", stack=STACK, home=str(directory),
                        reason=str(exc))


def prepare_current(trees: list[Tree], rebuild: bool = False, say=print) -> list[Tree]:
    """The current stack for amd64 and for every tree the index has wheels for (arm64),
    the home side pinned to what the other side resolved; empty when no tree has wheels."""
    by_arch = {t.arch: t for t in trees}
    foreign = [by_arch[a] for a in PLATFORMS if a != HOME and a in by_arch]
    out: list[Tree] = []
    for base in foreign:
        made = stack(base, rebuild=rebuild, say=say)
        say(summary(made))
        out.append(made)
    pins = next((t.packages for t in out if t.ok), None)
    if out:
        home = stack(by_arch[HOME], pins=pins, rebuild=rebuild, say=say) if pins else Tree(
            HOME, None, "failed", stack=STACK, reason="no other side's wheels to match")
        say(summary(home))
        out.insert(0, home)
    return out
