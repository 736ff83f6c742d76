"""The architecture's rules (ARCHITECTURE.md) hold in the code: imports only go downward,
there is no import circle, no module outgrows a room, and the core runs without extras."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
MAX_LINES = 450
LINT = Path(sys.executable).with_name("lint-imports")
# What `pip install persistbench` does not install (see persistbench.sources.extras).
EXTRA_MODULES = ("matplotlib", "jinja2", "onnx", "onnxruntime", "skl2onnx", "uv", "pandas",
                 "pyarrow", "memray", "asv", "pytest_benchmark")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_circle_finder_on_known_graphs():
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert sorted(circles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}})) == [
        ["a", "b"], ["c", "d"]]


def test_no_import_circles():
    graph = grimp.build_graph("persistbench", cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert circles(edges) == []


def _lint(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    if not LINT.exists():
        pytest.skip(f"lint-imports is not installed next to {sys.executable} (the dev extra)")
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def test_import_contracts_hold():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]


def test_an_upward_import_breaks_the_contracts(tmp_path):
    """The contracts can fail: a copy of the package whose results schema imports a command."""
    copy = tmp_path / "persistbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    units = copy / "results" / "units.py"
    units.write_text(units.read_text() + "\nfrom persistbench.commands import options  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = _lint(tmp_path, {**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout[-3000:]
    assert "persistbench.results.units -> persistbench.commands.options" in done.stdout


def test_no_module_outgrows_its_room():
    too_long = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES and "generated" not in text[:400].lower():
            too_long[str(path.relative_to(ROOT))] = lines
    assert too_long == {}


LEAN_RUN = textwrap.dedent("""
    import sys

    BLOCKED = set(sys.argv[1].split(","))

    class NotInstalled:
        # As in an install without extras: importing one fails in this process.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NotInstalled())
    from persistbench.commands import options

    def no_report(output, only=False):  # the page needs the report extra: not this check's
        return 0

    options.report_after_run = no_report
    from persistbench.commands.main import main

    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.slow
def test_the_core_measures_without_extras(tmp_path):
    """`persistbench run` with pickle, joblib and skops on logreg, in a process where every
    extra fails to import: the measuring core and the terminal summary need none."""
    out = tmp_path / "lean.json"
    done = subprocess.run(
        [sys.executable, "-c", LEAN_RUN, ",".join(EXTRA_MODULES), "run", "--formats",
         "pickle,joblib,skops", "--models", "logreg", "--no-calibrate", "--output", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.exists() and "verdict" in done.stdout
