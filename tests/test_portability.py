"""The portability experiment: fingerprints, the outcome classifier, the exceptions'
sentences, a platform without the tools, and (slow) a real run on the i386 tree."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from persistbench.envs import arch
from persistbench.experiments.parameters import fingerprint, fingerprints, first_difference
from persistbench.experiments.portability import agreement, judge
from persistbench.report.portability_views import exceptions
from persistbench.sources.models import UsageError

REQUIRE_ARCH = "PERSISTBENCH_REQUIRE_ARCH"


def test_an_array_saved_big_endian_has_the_same_fingerprint():
    a = np.linspace(-3, 3, 7)
    assert fingerprint(a.astype(">f8")) == fingerprint(a)
    words = np.array(["alpha", "beta"])
    assert fingerprint(words.astype(words.dtype.newbyteorder(">"))) == fingerprint(words)


def test_integer_width_is_normalised_but_float_width_is_not():
    a = np.arange(5, dtype=np.int64)
    assert fingerprint(a.astype(np.int32)) == fingerprint(a)
    assert fingerprint(a.astype(">i4")) == fingerprint(a)
    assert fingerprint(np.arange(3, dtype=np.uint32)) == fingerprint(np.arange(3, dtype=np.uint64))
    assert fingerprint(a.astype(np.float32)) != fingerprint(a.astype(np.float64))
    assert fingerprint(a + np.int64(1)) != fingerprint(a)


def test_structured_arrays_compare_field_by_field():
    """A decision tree's nodes on i386 hold 32-bit `intp` fields beside float64 ones."""
    wide = np.array([(1, 0.5), (2, 1.5)], dtype=[("child", "<i8"), ("threshold", "<f8")])
    narrow = np.array([(1, 0.5), (2, 1.5)], dtype=[("child", ">i4"), ("threshold", ">f8")])
    assert fingerprints({"nodes": wide}) == fingerprints({"nodes": narrow})
    narrow["threshold"][1] = 1.25
    assert first_difference(fingerprints({"nodes": wide}), fingerprints({"nodes": narrow})) \
        .startswith("['nodes'].threshold:")


def test_a_fitted_model_has_the_same_fingerprints_after_a_pickle_round_trip():
    from sklearn.ensemble import RandomForestClassifier

    X = np.random.default_rng(0).standard_normal((60, 3))
    est = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, X[:, 0] > 0)
    here, there = fingerprints(est), fingerprints(pickle.loads(pickle.dumps(est)))
    assert first_difference(here, there) is None
    assert any(path.endswith(".threshold") for path in here)  # the trees' nodes were reached
    changed = pickle.loads(pickle.dumps(est))
    changed.estimators_[1].tree_.threshold[0] += 1e-12  # a view on the nodes array
    assert "estimators_'][1]" in first_difference(here, fingerprints(changed))


def test_predictions_identical_within_tolerance_and_at_its_edge():
    want = {"labels": np.array([0, 1, 1]), "proba": np.array([0.0, 0.25, 4.0])}
    assert agreement(want, dict(want))["predictions"] == "identical"
    edge = {"labels": want["labels"], "proba": np.array([1e-9, 0.25, 4.0])}
    assert agreement(want, edge) == {"predictions": "within-tolerance", "max_abs_diff": 1e-9}
    beyond = {"labels": want["labels"], "proba": np.array([np.nextafter(1e-9, 1), 0.25, 4.0])}
    assert agreement(want, beyond)["predictions"] == "differs"
    # the tolerance scales with the value: 4 may move by 4e-9
    scaled = {"labels": want["labels"], "proba": np.array([0.0, 0.25, 4.0 + 3.9e-9])}
    assert agreement(want, scaled)["predictions"] == "within-tolerance"


def test_labels_must_be_exact_and_shapes_equal():
    want = {"labels": np.array([0, 1, 1])}
    assert agreement(want, {"labels": np.array([0, 1, 0])}) == {
        "predictions": "differs", "differs_in": "labels", "max_abs_diff": None,
        "label_agreement": pytest.approx(2 / 3)}
    assert agreement(want, {"labels": np.array([0, 1])})["predictions"] == "differs"
    assert agreement(want, {})["predictions"] == "differs"
    # big-endian outputs of the same values are the same predictions
    assert agreement({"v": np.array([1.5, 2.5])},
                     {"v": np.array([1.5, 2.5], dtype=">f8")})["predictions"] == "identical"


def test_outcome_names_the_phase_that_failed():
    fine = {"predictions": "within-tolerance"}
    assert judge({"outcome": "crash"}, None) == "crash"
    assert judge({"outcome": "error", "failed_phase": "load"}, None) == "error-load"
    assert judge({"outcome": "error", "failed_phase": "predict"}, None) == "error-predict"
    assert judge({"outcome": "differs"}, fine) == "within-tolerance"
    assert judge({"outcome": "ok"}, None) == "differs"  # no outputs to compare: not fine


def _cell(model, fmt, outcome, message=None, direction="amd64->s390x", **extra):
    return {"experiment": "portability", "model": model, "format": fmt, "variant": direction,
            "status": "ok", "outcome": outcome, "message": message, "parameters": "exact",
            "loaded_pointer_bits": 64, "loaded_byteorder": "big", **extra}


def test_exceptions_say_which_formats_work_in_one_sentence_each():
    boom = "ValueError: Little-endian buffer not supported on big-endian compiler"
    cells = [_cell("knn", f, "error-load", boom) for f in ("pickle", "cloudpickle")]
    cells += [_cell("knn", "joblib", "identical"), _cell("logreg", "pickle", "identical")]
    cells += [_cell("forest", "pickle", "within-tolerance", parameters="differ",
                    parameters_difference="x: a here, b there")]
    cells += [_cell("hgb", f, "error-predict", "ValueError: no", direction="amd64->i386",
                    loaded_pointer_bits=32, loaded_byteorder="little") for f in ("pickle",)]
    assert exceptions(cells) == [
        "forest loads with changed parameters amd64→s390x (64-bit, big-endian) with every "
        "format: x: a here, b there.",
        "hgb loads but fails at the first predict amd64→i386 (32-bit, little-endian) with "
        "every format: ValueError: no.",
        "knn fails to load amd64→s390x (64-bit, big-endian) with cloudpickle, pickle (not "
        f"joblib): {boom}."]


def test_unknown_architectures_are_refused():
    assert arch.parse_arches("s390x, i386") == ["s390x", "i386"]
    with pytest.raises(UsageError, match="--arch 'amd64'"):
        arch.parse_arches("amd64")
    with pytest.raises(UsageError, match="'sparc'"):
        arch.parse_arches("i386,sparc")


def test_a_platform_without_the_tools_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSISTBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(arch.platform, "machine", lambda: "aarch64")
    assert "x86_64 Linux host; this is Linux aarch64" in arch.missing_tools(["i386"])
    monkeypatch.setattr(arch.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(arch.shutil, "which", lambda name: None)
    assert arch.missing_tools(["arm64"]).startswith(
        "portability needs mmdebstrap, qemu-aarch64-static (Debian: apt-get install")
    env = {**os.environ, "PERSISTBENCH_CACHE": str(tmp_path), "PATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "persistbench", "portability", "--arch",
                           "i386", "--output", str(tmp_path / "r.json")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "needs mmdebstrap" in proc.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.fixture(scope="module")
def i386_run(tmp_path_factory):
    """A real run: the amd64 and i386 trees (built once into the project cache), two models,
    two formats. Skipped with the reason where the tools are missing, unless CI requires it."""
    problem = arch.missing_tools(["i386"])
    if problem:
        if os.environ.get(REQUIRE_ARCH) == "1":
            pytest.fail(f"{problem}, but {REQUIRE_ARCH}=1 requires the architecture trees")
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("portability") / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "persistbench", "portability", "--arch", "i386", "--models",
         "logreg,kneighbors-auto", "--formats", "pickle,joblib", "--output", str(out)],
        capture_output=True, text=True, timeout=1500, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_i386_loads_what_amd64_saved_except_a_kd_tree(i386_run):
    data, stdout = i386_run
    cells = {(c["model"], c["format"]): c for c in data["cells"]}
    assert set(cells) == {(m, f) for m in ("logreg", "kneighbors-auto")
                          for f in ("pickle", "joblib")}
    for c in cells.values():
        assert c["variant"] == "amd64->i386" and c["status"] == "ok"
        assert c["loaded_pointer_bits"] == 32 and c["loaded_route"] == "native"
        assert c["emulated"] is False and not c["versions_differ"]
    for fmt in ("pickle", "joblib"):
        logreg = cells[("logreg", fmt)]
        assert logreg["outcome"] in ("identical", "within-tolerance")
        assert logreg["parameters"] == "exact" and logreg["parameters_compared"] > 5
        knn = cells[("kneighbors-auto", fmt)]
        assert knn["outcome"] == "error-load" and "Buffer dtype mismatch" in knn["message"]
    trees = {t["arch"]: t for t in data["run"]["portability_trees"]}
    assert trees["i386"]["machine"] == "i686" and trees["amd64"]["pointer_bits"] == 64
    assert trees["i386"]["packages"]["scikit-learn"] == trees["amd64"]["packages"][
        "scikit-learn"]
    assert "kneighbors-auto fails to load amd64→i386" in " ".join(stdout.split())


def test_the_report_section_opens_with_the_exceptions_and_keeps_emulated_times_apart():
    from persistbench.report.blocks import Paragraph, Table
    from persistbench.report.views import sections

    cells = [_cell("knn", "pickle", "error-load", "ValueError: x", load_once_s=None),
             _cell("knn", "joblib", "identical", load_once_s=0.5, predict_once_s=0.1,
                   emulated=True),
             _cell("knn", "joblib", "identical", direction="amd64->i386", load_once_s=0.01,
                   predict_once_s=0.002, emulated=False)]
    [section] = sections({"portability": cells}, {})
    first, *rest = section.blocks
    assert isinstance(first, Paragraph) and first.text.startswith(
        "Exceptions found: knn fails to load amd64→s390x")
    timings = next(b for b in rest if isinstance(b, Table) and b.title.startswith("load and"))
    assert [row[:2] for row in timings.rows] == [["amd64→s390x", "emulated"],
                                                 ["amd64→i386", "native"]]


@pytest.mark.slow
def test_the_i386_reproduction_script_still_reproduces(i386_run):
    """benchmarks/portability_repro/knn_auto_i386.sh, on the trees the run above used."""
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks/portability_repro/knn_auto_i386.sh"
    assert len(script.read_text().splitlines()) == 3
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.count("Buffer dtype mismatch, expected 'const ITYPE_t'") == 2


def test_directions_go_out_from_home_and_back_from_the_reverse_architectures():
    from persistbench.commands.portability import directions

    assert directions(["amd64", "i386", "arm64"], ["arm64"]) == [
        "amd64->i386", "amd64->arm64", "arm64->amd64"]
    assert directions(["amd64+wheels", "arm64+wheels"], ["arm64"]) == [
        "amd64+wheels->arm64+wheels", "arm64+wheels->amd64+wheels"]


def test_the_current_stack_is_a_second_column_beside_debians():
    from persistbench.report.portability_views import stacks

    def cell(model, fmt, outcome, stack, version, message=None):
        key = "" if stack == "bookworm" else f"+{stack}"
        return _cell(model, fmt, outcome, message, direction=f"amd64{key}->arm64{key}",
                     loaded_stack=stack, loaded_versions={"scikit-learn": version})

    cells = [cell("knn", f, "identical", "bookworm", "1.2.1") for f in ("pickle", "joblib")]
    cells += [cell("knn", "pickle", "error-load", "wheels", "1.9.1", "ValueError: x"),
              cell("knn", "joblib", "within-tolerance", "wheels", "1.9.1"),
              _cell("knn", "pickle", "identical", direction="amd64->i386")]
    [table] = stacks(cells)  # i386 has one stack: no side-by-side table
    assert table.title.startswith("amd64→arm64")
    assert table.columns == ["model", "bookworm (scikit-learn 1.2.1)",
                             "wheels (scikit-learn 1.9.1)"]
    assert table.rows == [["knn", "fine with every format",
                           "error-load with pickle; fine with joblib"]]
