"""The static audit: no benign zoo file flagged, every crafted payload flagged, nothing run.

Payload files are only written here, never loaded: the audit reads them as data. Each one
would only create a canary under tmp_path if it ever ran, and the tests check it did not.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest

from persistbench.audit import Unreadable, audit
from persistbench.commands.main import main
from persistbench.experiments import security
from persistbench.sources.formats import FORMATS, Unsupported
from persistbench.sources.models import MODELS

# joblib's compression method -> the container the audit recognises by its magic bytes
COMPRESSIONS = {"zlib": "zlib", "gzip": "gzip", "bz2": "bz2", "lzma": "lzma", "xz": "xz",
                "lz4": "lz4"}


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory) -> list[tuple[str, str, Path]]:
    """Every small zoo model in every format that accepts it (joblib-mmap shares joblib's)."""
    folder = tmp_path_factory.mktemp("zoo")
    written = []
    for name, spec in MODELS.items():
        est, X = spec.build("small", 0)
        for fmt in FORMATS.values():
            if fmt.name == "joblib-mmap":
                continue
            path = folder / f"{name}{fmt.suffix}"
            try:
                fmt.dump(est, path, X)
            except Unsupported:
                continue
            written.append((name, fmt.name, path))
    return written


def test_no_benign_zoo_file_is_flagged(zoo_files):
    formats_seen = {fmt for _, fmt, _ in zoo_files}
    assert formats_seen == set(FORMATS) - {"joblib-mmap"}
    assert len(zoo_files) > 60
    for model, fmt, path in zoo_files:
        # the custom-code model refers to a function of the zoo's own module by name
        trusted = ("persistbench.sources.models",) if model == "custom_code" else ()
        report = audit(path, trusted)
        assert report.exit_status == 0, (model, fmt, report.findings, report.error)
        expected = {"skops": "skops", "onnx": "onnx"}.get(fmt)
        if fmt.startswith("joblib"):
            assert report.format == "joblib" and report.details["joblib_arrays"] > 0, path
            assert report.compression == {"joblib-zlib3": "zlib", "joblib-lz4": "lz4",
                                          "joblib-lzma": "lzma"}.get(fmt)
        elif expected:
            assert report.format == expected
        else:
            assert report.format in ("pickle", "cloudpickle")
            assert any(name.startswith("sklearn.") for name in report.imports)


def test_custom_code_reference_is_flagged_unless_trusted(zoo_files):
    path = next(p for m, f, p in zoo_files if m == "custom_code" and f == "skops")
    report = audit(path)
    assert report.flagged
    assert report.findings[0].name == "persistbench.sources.models.<lambda>"
    shipped = next(p for m, f, p in zoo_files if m == "custom_code" and f == "cloudpickle")
    report = audit(shipped)  # code inside, but nothing of it is called while loading
    assert report.format == "cloudpickle" and not report.flagged and report.notes


def _payloads(folder: Path, canary: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a finding name the audit must report)."""
    files: dict[str, tuple[Path, str]] = {}
    shell = security.ShellCommand(security.touch_command(canary))
    for name, data in security.malicious_pickles(canary).items():
        path = folder / f"{name}.pkl"
        path.write_bytes(data)
        files[name] = (path, {"reduce-os-system": f"{os.system.__module__}.system",
                              "stack-global-eval": "builtins.eval",
                              "getattr-chain": "builtins.getattr"}[name])
    path = folder / "protocol0.pkl"
    path.write_bytes(pickle.dumps(shell, protocol=0))  # no header: starts with GLOBAL
    files["protocol-0"] = (path, f"{os.system.__module__}.system")
    path = folder / "hidden.joblib"
    joblib.dump(security.bait(shell), path)
    files["joblib-after-array"] = (path, f"{os.system.__module__}.system")
    path = folder / "object-array.joblib"
    joblib.dump({"w": np.ones(10), "items": np.array([shell, 1], dtype=object)}, path)
    files["joblib-object-array"] = (path, f"{os.system.__module__}.system")
    for method in COMPRESSIONS:
        path = folder / f"hidden.joblib.{method}"
        joblib.dump(security.bait(shell), path, compress=(method, 3))
        files[f"joblib-{method}"] = (path, f"{os.system.__module__}.system")
    path = folder / "shipped.cloudpkl"
    FORMATS["cloudpickle"].dump(security.CallOnLoad(security.shipped_writer(), str(canary)),
                                path, None)
    files["cloudpickle-shipped-code"] = (path, "cloudpickle.cloudpickle._make_function(…)")
    path = folder / "shell.cloudpkl"
    FORMATS["cloudpickle"].dump(security.bait(shell), path, None)
    files["cloudpickle-os-system"] = (path, f"{os.system.__module__}.system")
    path = folder / "payload.skops"
    security.skops_payload(path, canary)
    files["skops-constructor"] = (path, f"{os.system.__module__}.system")
    (folder / "onnx").mkdir()
    path = folder / "onnx" / "escape.onnx"
    security.onnx_external_escape(path, folder / "secret.bin")
    files["onnx-external-data"] = (path, "W -> ../secret.bin")
    path = folder / "custom-op.onnx"
    security.onnx_custom_op(path, canary)
    files["onnx-custom-op"] = (path, "canary.example:WriteCanary")
    return files


def test_every_crafted_payload_is_flagged(tmp_path):
    canary = tmp_path / "canary"
    for name, (path, expected) in _payloads(tmp_path, canary).items():
        report = audit(path)
        assert report.exit_status == 1, (name, report.to_json())
        names = [f.name for f in report.findings]
        assert expected in names, (name, names)
        if name.startswith("joblib-") and name != "joblib-after-array":
            assert report.format == "joblib"
    assert not canary.exists()


def test_what_the_walk_sees_inside_the_containers(tmp_path):
    canary = tmp_path / "canary"
    files = _payloads(tmp_path, canary)
    chain = audit(files["getattr-chain"][0])
    kinds = {(f.kind, f.name) for f in chain.findings}
    assert ("import", "builtins.__import__") in kinds
    assert any(kind == "dynamic-call" for kind, _ in kinds)  # calling getattr's result
    nested = audit(files["joblib-object-array"][0])
    assert nested.details["nested_pickles"] == 1
    for method, magic in COMPRESSIONS.items():
        report = audit(files[f"joblib-{method}"][0])
        assert report.compression == magic and report.details["joblib_arrays"] == 1
    assert not canary.exists()


def test_unreadable_files_say_why(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(list(range(1000)), protocol=4)[:40])
    for name, reason in [("empty.pkl", "empty"), ("noise.bin", "neither"),
                         ("cut.pkl", "truncated"), ("missing.pkl", "no such file")]:
        with pytest.raises(Unreadable, match=reason):
            report = audit(tmp_path / name)
            if report.error:  # readable up to a point: partial report, exit 2
                assert report.exit_status == 2
                raise Unreadable(report.error)


def test_truncated_payload_is_still_flagged(tmp_path):
    data = security.malicious_pickles(tmp_path / "canary")["reduce-os-system"]
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:-2])  # the payload's REDUCE is there, its STOP is not
    report = audit(path)
    assert report.error and report.exit_status == 1


def test_cli_exit_status_and_json(tmp_path, zoo_files, capsys):
    clean = next(p for m, f, p in zoo_files if (m, f) == ("logreg", "joblib-lz4"))
    assert main(["audit", str(clean)]) == 0
    assert "verdict: clean" in capsys.readouterr().out
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(security.malicious_pickles(tmp_path / "canary")["stack-global-eval"])
    assert main(["audit", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["flagged"] and data["findings"][0]["name"] == "builtins.eval"
    (tmp_path / "junk").write_bytes(b"\x00" * 10)
    assert main(["audit", str(tmp_path / "junk")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("persistbench: error:") and "\n" not in err
    assert not (tmp_path / "canary").exists()


# ----------------------------------------------------------------- allow-list and policy

def test_allowlist_is_generated_data_with_its_versions():
    from persistbench.audit.policy import allowlist

    data = allowlist()
    assert data["command"] == "python -m persistbench.audit.allowlist"
    assert {"numpy", "scipy", "scikit-learn"} <= set(data["generated_with"])
    assert data["size"] == sum(len(v) for v in data["names"].values()) > 100
    assert "functools.partial" in data["reviewed_not_admitted"]
    assert "functools" not in data["names"] and "os" not in data["names"]
    assert "eval" not in data["names"].get("builtins", {})
    # stored inside HistGradientBoosting's partial, never called while loading
    assert "call" not in data["names"]["sklearn.utils.validation"]["check_array"]


def _fitted():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit([[0.0], [1.0], [2.0]], [0, 1, 1])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_is_clean_python2_names_resolved(tmp_path, protocol):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(_fitted(), protocol=protocol))
    report = audit(path)
    assert report.exit_status == 0, report.findings
    if protocol < 2:  # copy_reg._reconstructor, resolved as the unpickler resolves it
        assert "copyreg._reconstructor" in report.imports


def _write(tmp_path: Path, data: bytes, name: str = "f.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_names_are_exact_pairs_not_packages(tmp_path):
    from benchmarks.audit_corpus.payloads import _dotted, _g, _str_op

    _dotted(tmp_path / "d.pkl", tmp_path / "canary")
    names = [f.name for f in audit(tmp_path / "d.pkl").findings]
    assert "joblib.numpy_pickle.os.system" in names
    # numpy.save lives in an allowed package, but numpy never pickles it
    save = _write(tmp_path, b"\x80\x02" + _g("numpy", "save") + _str_op("x") + b"\x85R.")
    assert [f.name for f in audit(save).findings] == ["numpy.save", "numpy.save"]
    # numpy.memmap is pickled as a value (a re-saved mmap model); calling it is flagged
    memmap = _write(tmp_path, b"\x80\x02" + _g("numpy", "memmap") + _str_op("x") + b"\x85R.")
    assert [(f.kind, f.name) for f in audit(memmap).findings] == [("call", "numpy.memmap")]
    exec_ = _write(tmp_path, b"c__builtin__\nexec\n(Vpass\ntR.")
    assert audit(exec_).findings[0].name == "builtins.exec"


def test_partial_is_allowed_only_in_the_shape_scikit_learn_writes(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from benchmarks.audit_corpus.payloads import _g

    rng = np.random.default_rng(0)
    X = np.c_[rng.integers(0, 3, 80), rng.normal(size=80)]
    model = HistGradientBoostingClassifier(categorical_features=[0], max_iter=3)
    path = _write(tmp_path, pickle.dumps(model.fit(X, X[:, 1] > 0)))
    report = audit(path)
    assert report.exit_status == 0 and "functools.partial" in report.imports
    bad = _write(tmp_path, b"\x80\x02" + _g("functools", "partial") + _g("numpy", "save")
                 + b"\x85R.", "p.pkl")
    assert any(f.kind == "shape" for f in audit(bad).findings)


# ----------------------------------------------------------- loaders, polyglots, budgets

def test_every_technique_is_flagged_without_running(tmp_path):
    """All crafted files but the slow bombs: flagged (exit 1), and no canary appears."""
    from benchmarks.audit_corpus.payloads import PAYLOADS

    canaries = tmp_path / "canaries"
    canaries.mkdir()
    for payload in PAYLOADS:
        if payload.technique == 5 and payload.name != "mark-bomb":
            continue
        path, canary = tmp_path / f"{payload.name}.bin", canaries / f"{payload.name}.npy"
        payload.write(path, canary)
        report = audit(path)
        assert report.exit_status == 1, (payload.name, report.to_json())
    assert not list(canaries.iterdir())


def test_disagreements_and_trailing_data_are_findings(tmp_path):
    from benchmarks.audit_corpus.payloads import _wrapper_in_pickle, _zip_after_pickle

    canary = tmp_path / "canary"
    report = audit(_write(tmp_path, _wrapper_in_pickle(canary), "w.pkl"))
    assert {f.loader for f in report.findings if f.kind == "call"} == {"pickle.load"}
    assert any(f.kind == "polyglot" for f in report.findings)
    polyglot = audit(_write(tmp_path, _zip_after_pickle(canary), "z.pkl"))
    assert any(f.kind == "polyglot" and "zip" in f.name for f in polyglot.findings)
    two = _write(tmp_path, pickle.dumps([1]) + pickle.dumps([2]), "two.pkl")
    assert [f.kind for f in audit(two).findings] == ["trailing-data"]


def test_budgets_stop_the_audit_with_a_finding(tmp_path):
    from persistbench.audit import Budget

    ops = _write(tmp_path, b"\x80\x04N" + b"N0" * 20_000 + b".")
    assert audit(ops).exit_status == 0
    report = audit(ops, budget=Budget(opcodes=10_000))
    assert report.exit_status == 1 and report.findings[0].kind == "budget"
    assert "10,000 opcodes" in report.findings[0].name
    marks = _write(tmp_path, b"\x80\x04" + b"(" * 5_000 + b"N.", "marks.pkl")
    assert audit(marks).findings[0].name.endswith("nested MARKs")
    report = audit(ops, budget=Budget(seconds=0.0))
    assert "0 s" in report.findings[0].name


def test_the_memory_budget_counts_what_the_audit_adds_not_the_process(tmp_path):
    from persistbench.audit import Budget
    from persistbench.audit.budget import BudgetExceeded

    ops = _write(tmp_path, b"\x80\x04N" + b"N0" * 20_000 + b".")
    held = b"x" * (300 << 20)  # written, so resident before the audit begins
    assert audit(ops, budget=Budget(rss_bytes=200 << 20)).exit_status == 0
    budget = Budget(rss_bytes=64 << 20)
    grown = b"y" * (128 << 20)
    with pytest.raises(BudgetExceeded, match="64 MiB of memory"):
        budget.check_time_and_memory()
    del held, grown


def test_large_byte_arguments_are_streamed(tmp_path):
    """A 64 MB array in a protocol-5 pickle is stepped over, not read into memory."""
    import tracemalloc

    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps({"coef_": np.zeros(8 << 20)}, protocol=5))
    tracemalloc.start()
    report = audit(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.exit_status == 0
    assert peak < 4 << 20, peak


def test_a_json_file_or_junk_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "meta.json").write_text('{"a": 1}')
    (tmp_path / "junk.bin").write_bytes(b"(" + bytes(range(256)) * 4)
    for name in ("meta.json", "junk.bin"):
        assert main(["audit", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("persistbench: error:") and "\n" not in err


@pytest.mark.slow
def test_corpus_small_run(tmp_path):
    """The benchmark end to end: every payload runs under its loader, is flagged by the
    audit, never runs in it; every benign file is clean."""
    from benchmarks.audit_corpus.corpus import run

    summary = run(tmp_path)["summary"]
    assert summary["benign_files"] >= 60 and summary["malicious_files"] >= 30
    assert summary["false_alarms"] == []
    assert summary["malicious_missed"] == []
    assert summary["malicious_not_executing"] == []
    assert summary["malicious_verified_executing"] == summary["malicious_with_payload"] >= 30
    assert summary["techniques_covered"] == [1, 2, 3, 4, 5]
    assert summary["audit_forbidden_events"] == [] and summary["canaries_after_audit"] == []


# ------------------------------------------------------------ the walk reads as loaders do

def test_int_and_long_arguments_read_as_each_unpickler_reads_them():
    """Random INT/LONG lines: the walk's value (or refusal) is the C unpickler's for
    pickle.load and the pure-Python unpickler's for joblib.load (`010`, `0x1`, `1_0`, NUL)."""
    import random

    from persistbench.audit.integers import read_int, read_long

    rng = random.Random(7)
    alphabet = [b"0", b"1", b"7", b"8", b"9", b"x", b"X", b"a", b"f", b"o", b"b", b"_", b" ",
                b"-", b"+", b"\t", b"\0", b"L", b"\xff", b"\r"]
    lines = [b"010", b"0x10", b"0o17", b"1_0", b"", b" 1", b"00", b"01", b"1\0zz",
             b"9223372036854775808"]
    lines += [b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
              for _ in range(4000)]
    for line in lines:
        for opcode, reader in ((b"I", read_int), (b"L", read_long)):
            for c_unpickler, loads in ((True, pickle.loads), (False, pickle._loads)):
                try:
                    expected = loads(opcode + line + b"\n.")
                except Exception:
                    expected = ValueError
                try:
                    got = reader(line + b"\n", c_unpickler)
                except ValueError:
                    got = ValueError
                assert (got, type(got)) == (expected, type(expected)), (opcode, line)


def test_a_payload_only_the_c_unpickler_reaches_is_flagged_for_it(tmp_path):
    """`I010` is 8 to pickle.load and an error to joblib.load: the walk follows pickle.load
    past it instead of stopping with joblib's reading."""
    path = tmp_path / "octal.pkl"
    path.write_bytes(b"\x80\x02I010\n0cos\nsystem\nX\x04\x00\x00\x00trueR.")
    report = audit(path)
    assert report.exit_status == 1
    assert any(f.name in ("os.system", "posix.system") and f.loader == "pickle.load"
               for f in report.findings)
