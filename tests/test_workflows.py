"""The GitHub workflows, checked offline: YAML, GitHub's schema, zizmor, and their structure."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = [WORKFLOWS / "benchmarks.yml", WORKFLOWS / "tests.yml"]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_github_schema_accepts_both_workflows():
    done = subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *map(str, FILES)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing():
    done = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(WORKFLOWS)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_and_permissions_minimal(path):
    data = _load(path)
    assert data["permissions"] == {}
    for job in data["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].split("@")[1]
                assert len(ref) == 40 and int(ref, 16) >= 0, step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_benchmarks_measure_three_machines_and_publish_a_comparison():
    data = _load(WORKFLOWS / "benchmarks.yml")
    measure, report, deploy = (data["jobs"][k] for k in ("measure", "report", "deploy"))
    runners = {m["os"] for m in measure["strategy"]["matrix"]["include"]}
    assert runners == {"ubuntu-latest", "ubuntu-24.04-arm", "macos-14"}
    assert measure["strategy"]["fail-fast"] is False
    script = _runs(measure)
    assert "pip install -e '.[dev]'" in script
    assert "persistbench run --profile quick" in script
    asv_run = next(line for line in script.splitlines() if "asv run" in line)
    for flag in ("--python=same", "--quick", "--set-commit-hash"):
        assert flag in script and "asv run" in asv_run
    assert "actions/upload-artifact" in _uses(measure)
    assert report["needs"] == "measure"
    assert "actions/download-artifact" in _uses(report)
    assert "persistbench compare" in _runs(report) and "--html" in _runs(report)
    assert "persistbench report" in _runs(report)
    assert "asv publish" in _runs(report)
    assert "actions/upload-pages-artifact" in _uses(report)
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert _uses(deploy) == ["actions/deploy-pages"]


def test_benchmarks_name_machines_by_label_and_keep_publishing_when_one_fails():
    data = _load(WORKFLOWS / "benchmarks.yml")
    measure, report, deploy = (data["jobs"][k] for k in ("measure", "report", "deploy"))
    labels = [m["label"] for m in measure["strategy"]["matrix"]["include"]]
    # Machines are named by the runner label, never by the runner's random hostname.
    assert measure["env"]["PERSISTBENCH_MACHINE_LABEL"] == "${{ matrix.label }}"
    assert '--machine "$LABEL"' in _runs(measure)
    # The report runs, and the pages deploy, even when one architecture failed; it names it.
    assert "!cancelled()" in report["if"] and "!cancelled()" in deploy["if"]
    assert report["env"]["LABELS"].split() == labels
    assert "GITHUB_STEP_SUMMARY" in _runs(report)
    # asv finds its configured branch when the run was started from another one.
    for job in (measure, report):
        assert "git branch main origin/main" in _runs(job)


def test_benchmarks_keep_history_and_cache_what_they_can():
    data = _load(WORKFLOWS / "benchmarks.yml")
    measure, report = data["jobs"]["measure"], data["jobs"]["report"]
    assert "actions/cache" in _uses(measure)
    for job in (measure, report):
        setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-"))
        assert setup["with"]["cache"] == "pip"
    script = _runs(report)
    # Every earlier run comes back from the last published site and goes out with this one.
    assert "history.tar.gz" in script and "tar -czf site/history.tar.gz" in script
    assert "history/results/*/*.json" in script


def test_tests_workflow_runs_the_ci_script():
    data = _load(WORKFLOWS / "tests.yml")
    assert {"push", "pull_request"} <= set(data["on"])
    assert "bash .ci/run" in _runs(data["jobs"]["tests"])
