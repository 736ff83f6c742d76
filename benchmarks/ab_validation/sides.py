"""Environments for the A/B checks: thin venvs over one requirement environment, each with
`pace.slow_down(factor)` in its `sitecustomize`.

A thin venv holds no packages of its own: a `.pth` line adds the base environment's
site-packages (with its own `.pth` files), so the sides differ only by the `sitecustomize`,
and making one takes a second instead of copying 350 MB.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def base_environment() -> Path:
    """The requirement environment `ab --a joblib==<installed>` would build (cached)."""
    import joblib

    from persistbench.envs.builder import requirement_environment

    env = requirement_environment([f"joblib=={joblib.__version__}"])
    if not env.ok:
        sys.exit(f"the base environment could not be built: {env.reason}")
    return Path(env.python)


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def paced(base: Path, factor: float, root: Path) -> Path:
    """A thin venv over `base` whose pickle.load and joblib.load are `factor` slower; its
    python. Rebuilt each time: its files say exactly what it does."""
    directory = root / f"pace-{factor * 100:g}"
    shutil.rmtree(directory, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    site = site_packages(python)
    (site / "base.pth").write_text(
        f"import site; site.addsitedir({str(site_packages(base))!r})\n")
    shutil.copy(HERE / "pace.py", site / "persistbench_pace.py")
    (site / "sitecustomize.py").write_text(
        f"import persistbench_pace\npersistbench_pace.slow_down({factor!r})\n")
    return python
