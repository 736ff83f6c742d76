"""Machine ids: stable, readable, and free of a CI runner's random hostname when labelled."""

from __future__ import annotations

from persistbench.measure.machine import LABEL_VAR, fingerprint, machine_id

FP = {"hostname": "runner-7f3a9", "arch": "x86_64", "cpu_model": "AMD EPYC 7763 64-Core Processor",
      "cores_logical": 4, "ram_bytes": 16 * 2**30, "os": "Linux"}


def test_a_label_gives_label_arch_and_cpu_and_ignores_the_hostname():
    one = machine_id({**FP, "label": "ci"})
    assert one == "ci-x86-64-amd-epyc-7763-64-core-processor"
    assert machine_id({**FP, "label": "ci", "hostname": "runner-0000"}) == one


def test_a_label_that_names_the_architecture_does_not_repeat_it():
    assert machine_id({**FP, "label": "linux-x86_64"}).startswith("linux-x86-64-amd-epyc")


def test_without_a_label_hosts_differ_by_name_and_hardware():
    base = machine_id({**FP, "label": None})
    assert base.startswith("runner-7f3a9-x86_64-")
    assert machine_id({**FP, "label": None, "cores_logical": 8}) != base


def test_the_label_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(LABEL_VAR, "Lab Box 2")
    fp = fingerprint(tmp_path)
    assert fp["label"] == "Lab Box 2"
    assert fp["machine_id"].startswith("lab-box-2-")
