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

from harness.audit import Unreadable, audit
from harness.cli import main
from harness.experiments import security
from harness.formats import FORMATS, Unsupported
from harness.models import MODELS

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
        trusted = ("harness.models",) if model == "custom_code" else ()
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
    assert report.findings[0].name == "harness.models.<lambda>"
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
