"""No false alarms on real models: the benign corpus audits clean, and the rules that admit
what it needs (builtins, getattr, scipy distributions, the public API) refuse their
dangerous neighbours.

Files are written here from code and only audited (read), never loaded, except the one
check that a scipy distribution's pickled template really runs, which loads it in a child.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.audit_corpus import benign
from persistbench.audit import audit
from persistbench.audit.policy import allowlist, classify, side_effect


def _audit_bytes(tmp_path: Path, data: bytes, trusted: tuple[str, ...] = ()):
    path = tmp_path / "file.pkl"
    path.write_bytes(data)
    return audit(path, trusted)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    files, notes = benign.write_corpus(tmp_path_factory.mktemp("benign"))
    return files, notes, benign.audit_all(files)


@pytest.mark.slow
def test_the_benign_corpus_audits_clean(corpus):
    files, notes, rows = corpus
    summary = benign.summarize(rows, notes)
    assert summary["flagged_files"] == []
    assert summary["benign_files"] == len(files) >= 120
    named = {r["name"] for r in rows if r["family"] == "named"}
    for model in ("gp-regressor-sum-white", "column-selector", "select-k-best-chi2",
                  "isotonic", "calibrated-isotonic", "frozen-calibrated", "target-expm1",
                  "tokenizer-str-split", "pipeline-memory-cache-folder", "random-search-scipy"):
        assert f"named {model}" in named
    formats = {(r["name"], r["format"]) for r in rows}
    assert ("named target-expm1", "skops") in formats  # numpy.expm1 through skops too
    for protocol in range(3):  # sets, frozensets, complex numbers and ranges
        assert ("builtins values", f"pickle-p{protocol}") in formats
    assert {r["format"] for r in rows} >= {"pickle-p0", "pickle-p5", "joblib", "joblib-zlib",
                                           "cloudpickle", "skops"}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(benign.THIRD_PARTY))
def test_third_party_estimators_are_clean_with_trust_of_their_package_alone(corpus, family):
    module = benign.THIRD_PARTY[family]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{family} is not installed (pip install 'persistbench[corpus]')")
    files, _, rows = corpus
    mine = [r for r in rows if r["family"] == family]
    assert mine and all(r["trust"] == [module] and r["exit_status"] == 0 for r in mine), mine
    # and it is the trust that admits them: without it the package's own names are flagged
    untrusted = audit(next(f.path for f in files if f.family == family))
    assert untrusted.exit_status == 1
    assert any(f.name.startswith(module) for f in untrusted.findings)


@pytest.mark.slow
def test_the_corpus_tool_prints_its_count(corpus, tmp_path, capsys, monkeypatch):
    files, notes, _ = corpus
    monkeypatch.setattr(benign, "write_corpus", lambda folder: (files, notes))  # built once
    status = benign.main(["--folder", str(tmp_path), "--output", str(tmp_path / "out.json")])
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "out.json").read_text())
    assert status == 0 and printed["flagged"] == 0
    assert printed["benign_files"] == len(written["files"]) >= 120


def test_builtin_values_are_clean_at_every_protocol(tmp_path):
    from collections import OrderedDict, defaultdict

    value = {"s": {1, 2}, "f": frozenset({3}), "z": 1 + 2j, "r": range(1, 9, 2),
             "b": bytearray(b"ab"), "o": OrderedDict(a=1), "d": defaultdict(list),
             "sl": slice(1, 2), "e": ...}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        report = _audit_bytes(tmp_path, pickle.dumps(value, protocol=protocol))
        assert report.exit_status == 0, (protocol, report.findings)


def test_getattr_admits_a_builtin_method_by_name_and_nothing_else(tmp_path):
    def getattr_of(target: bytes, name: str) -> bytes:
        return (b"\x80\x02cbuiltins\ngetattr\n" + target + b"X" + len(name).to_bytes(4, "little")
                + name.encode() + b"\x86R.")

    assert _audit_bytes(tmp_path, pickle.dumps(str.split)).exit_status == 0
    assert _audit_bytes(tmp_path, getattr_of(b"cbuiltins\nstr\n", "split")).exit_status == 0
    for target, name in ((b"cbuiltins\nstr\n", "format"),  # reaches attributes of arguments
                         (b"cbuiltins\nstr\n", "__class__"),
                         (b"cbuiltins\nobject\n", "__subclasses__"),
                         (b"cnumpy\nndarray\n", "tofile")):
        report = _audit_bytes(tmp_path, getattr_of(target, name))
        assert any(f.name == "builtins.getattr" for f in report.findings), (name, report)
    # a name computed while loading, not a constant
    computed = b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nstr\ncbuiltins\nstr\nK\x01\x85R\x86R."
    assert _audit_bytes(tmp_path, computed).exit_status == 1


def _distribution_with_template(extra: str) -> bytes:
    from scipy import stats

    frozen = stats.uniform(0, 1)
    frozen.dist._parse_arg_template += extra
    return pickle.dumps(frozen, protocol=5)


def test_scipy_distributions_are_admitted_only_with_the_state_scipy_writes(tmp_path):
    """scipy's `rv_generic.__setstate__` exec()s `_parse_arg_template` from the state: a
    changed template runs as code when loaded, so only scipy's own passes."""
    from scipy import stats

    assert _audit_bytes(tmp_path, pickle.dumps(stats.loguniform(1e-3, 1.0))).exit_status == 0
    canary = tmp_path / "canary"
    evil = _distribution_with_template(f"\nopen({str(canary)!r}, 'w').close()\n")
    report = _audit_bytes(tmp_path, evil)
    assert [f for f in report.findings if f.kind == "build"], report.findings
    (tmp_path / "evil.pkl").write_bytes(evil)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], "
                    "'rb'))", str(tmp_path / "evil.pkl")], check=True, timeout=120)
    assert canary.exists()  # the template really runs on load
    frozen = stats.uniform(0, 1)
    frozen.dist._attach_methods = len  # a key scipy never writes
    report = _audit_bytes(tmp_path, pickle.dumps(frozen, protocol=5))
    assert report.exit_status == 1


def test_public_names_with_side_effects_stay_flagged_with_their_reason():
    listed = allowlist()
    assert listed["public_api_admitted"] > 1000
    for module, name in (("numpy", "save"), ("numpy", "load"), ("numpy", "fromfile"),
                         ("scipy.io", "savemat"), ("sklearn.datasets", "fetch_openml"),
                         ("joblib", "dump"), ("joblib.parallel", "Parallel"),
                         ("numpy.lib.stride_tricks", "as_strided"), ("numpy", "seterr"),
                         ("sklearn.tree._export", "export_graphviz")):
        assert side_effect(module, name), (module, name)
        assert classify(module, name, "value") not in (None, ""), (module, name)
    for module, name in (("numpy", "expm1"), ("sklearn.feature_selection._univariate_selection",
                                              "chi2"), ("sklearn.gaussian_process.kernels",
                                                        "WhiteKernel")):
        assert classify(module, name, "value") is None, (module, name)
    # a public class may be made empty and given its state, not called with the file's args
    assert classify("sklearn.gaussian_process.kernels", "Sum", "new") is None
    assert classify("joblib.memory", "Memory", "call") is not None


# Python 2 names for the named models; joblib's own reader for the third-party ones
LOAD_STAGE_FORMATS = {"named": "pickle-p0", **dict.fromkeys(benign.THIRD_PARTY, "joblib-zlib")}


@pytest.mark.slow
def test_both_stages_pass_the_named_and_third_party_models(corpus):
    """The confined load judges the globals the real unpickler resolved by the same list:
    it must agree with the walk on the models named as refused wrongly."""
    from persistbench.schedule import confine
    from persistbench.schedule.detonate import add_load_stage

    if confine.unavailable() is not None:
        pytest.skip(f"no confinement here: {confine.unavailable()}")
    files, _, _ = corpus
    chosen = [f for f in files if LOAD_STAGE_FORMATS.get(f.family) == f.format
              # and a dotted global (`randint_gen._entropy`), resolved by the loader
              or (f.name, f.format) == ("named random-search-scipy", "cloudpickle")]
    assert len(chosen) >= 15
    refused = {}
    for f in chosen:
        report = audit(f.path, f.trust)
        add_load_stage(report, f.trust)
        if report.findings:
            refused[f.path.name] = [(x.kind, x.name, x.reason) for x in report.findings]
    assert refused == {}
