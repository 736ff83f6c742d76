"""Results of any front -> the one results schema, so one report can come from any of them.

`persistbench report` accepts three kinds of input:

- a persistbench results file (`persistbench run`), read and validated as it is;
- a pytest-benchmark JSON file written by `pytest benchmarks/pytest --benchmark-json FILE`:
  the suite records the harness's machine fingerprint in `machine_info["persistbench"]` and
  each cell's harness measures (file size, per-phase peak RSS) in `extra_info`;
- an asv results directory (`.asv/results`): for each machine and environment, the latest
  commit's results of the `bench_persistence` roundtrip suites, read with asv's own reader.

Each converted dict is validated against the schema like a results file. Only the roundtrip
measures are converted; asv's other suites stay in asv's own pages (`asv publish`).
"""

from __future__ import annotations

import ast
import json
import math
from itertools import product
from pathlib import Path

from persistbench.results.protocols import HOT_LOOP, MEASURE_PROTOCOLS
from persistbench.results.schema import SCHEMA, ResultsError, cell_id, read, validate

EXPERIMENT = "roundtrip"
PYTEST_PHASES = {"test_dump": "dump", "test_load": "load", "test_load_cold": "load_cold"}
PYTEST_EXTRA = ("file_bytes", "dump_peak_rss_bytes", "load_peak_rss_bytes")
# asv: the harness's quantities under their protocols keep their names; asv's own loop
# (the hot-loop protocol) is a different figure and gets a name of its own.
ASV_TIMES = {"Quantities.track_dump_s": "dump", "Quantities.track_load_s": "load",
             "Quantities.track_load_cold_s": "load_cold",
             "RoundTrip.time_dump": "dump_hot_loop", "RoundTrip.time_load": "load_hot_loop"}
ASV_TRACKS = {"PhaseMemory.track_file_size": "file_bytes",
              "PhaseMemory.track_dump_peak_rss": "dump_peak_rss_bytes",
              "PhaseMemory.track_load_peak_rss": "load_peak_rss_bytes"}
ASV_SUITE = "bench_persistence"


def read_any(path: Path) -> list[dict]:
    """One results dict per machine (and asv environment) found at `path`."""
    path = Path(path)
    if path.is_dir():
        return from_asv(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: no such file or directory") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a JSON results file ({exc})") from exc
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return [read(path)]
    if isinstance(data, dict) and "benchmarks" in data and "machine_info" in data:
        return [from_pytest_benchmark(data, path)]
    raise ResultsError(f"{path}: neither a {SCHEMA} results file, a pytest-benchmark JSON "
                       "file nor an asv results directory")


def _timing(prefix: str, median: float, low: float | None, high: float | None, n: int,
            samples: list[float] | None, protocol: str | None = None) -> dict:
    """A timing and, in `protocols`, the protocol it was taken under (merged by the caller)."""
    key = f"{prefix}_s"
    out: dict = {key: {"min": low, "median": median, "max": high, "n": n},
                 "protocols": {key: protocol or MEASURE_PROTOCOLS.get(key, HOT_LOOP.name)}}
    if samples:
        out[f"{key}_samples"] = list(samples)
    return out


def _add(cell: dict, measures: dict) -> None:
    protocols = {**cell.get("protocols", {}), **measures.pop("protocols", {})}
    cell.update(measures)
    cell["protocols"] = protocols


def _header(model: str, size: str, fmt: str) -> dict:
    return {"cell_id": cell_id(EXPERIMENT, model, size, fmt), "experiment": EXPERIMENT,
            "model": model, "size": size, "format": fmt}


def _document(machine: dict, run: dict, cells: dict) -> dict:
    data = {"schema": SCHEMA, "machine": machine, "run": {"state": "finished", **run},
            "cells": list(cells.values())}
    validate(data)
    return data


# --------------------------------------------------------------------- pytest-benchmark

def from_pytest_benchmark(data: dict, path: Path) -> dict:
    own = data["machine_info"].get("persistbench")
    if not own:
        raise ResultsError(f"{path}: a pytest-benchmark file not written by persistbench's "
                           "suite (no machine_info.persistbench); run "
                           "`pytest benchmarks/pytest --benchmark-json FILE`")
    cells: dict[tuple[str, str, str], dict] = {}
    for bench in data["benchmarks"]:
        phase = PYTEST_PHASES.get(bench["name"].split("[", 1)[0])
        extra = bench.get("extra_info", {})
        if phase is None or not {"model", "size", "format"} <= extra.keys():
            continue
        key = (extra["model"], extra["size"], extra["format"])
        cell = cells.setdefault(key, {**_header(*key), "status": "ok",
                                      "source": "pytest-benchmark"})
        cell.update({k: extra[k] for k in PYTEST_EXTRA if k in extra})
        stats = bench["stats"]
        _add(cell, _timing(phase, stats["median"], stats["min"], stats["max"],
                           int(stats["rounds"]), stats.get("data"), extra.get("protocol")))
    commit = data.get("commit_info") or {}
    run = {"started": data["datetime"], "finished": data["datetime"], "argv": [],
           "harness_version": own["harness_version"], "profile": own["profile"],
           "peak_memory_method": own["peak_memory_method"], "source": "pytest-benchmark",
           "source_path": str(path), "commit": commit.get("id")}
    # Its own page: merged into the harness's runs of the same host, its cells (timings
    # without the fidelity checks) would replace theirs.
    machine = {**own["machine"], "machine_id": f"{own['machine']['machine_id']}-pytest-benchmark"}
    return _document(machine, run, cells)


# ---------------------------------------------------------------------------------- asv

ASV_MACHINE_KEYS = ("arch", "cpu", "machine", "num_cpu", "os", "ram", "python")


def _asv_machine(params: dict) -> dict:
    """asv's machine description in the fingerprint's fields (what asv does not know: None).

    The id is asv's machine name made unique like the harness's, plus "-asv": asv describes
    the CPU differently, so the two sources of one host stay two pages, never a mix.
    """
    from persistbench.results.identity import machine_id

    system, _, kernel = (params.get("os") or "").partition(" ")
    fp = {"hostname": params.get("machine", ""), "arch": params.get("arch", ""),
          "cpu_model": params.get("cpu", ""), "cores_logical": int(params.get("num_cpu") or 0),
          "ram_bytes": int(params.get("ram") or 0), "os": system, "kernel": kernel,
          "python": params.get("python"),
          "packages": {k: v or None for k, v in params.items() if k not in ASV_MACHINE_KEYS},
          "threadpools": [], "filesystem": {}, "calibration": None}
    fp["machine_id"] = f"{machine_id(fp)}-asv"
    return fp


def _latest(results: list) -> list:
    """The results of the most recent commit, one per environment."""
    newest = max(r.date or 0 for r in results)
    return [r for r in results if (r.date or 0) == newest]


def from_asv(directory: Path) -> list[dict]:
    from asv.results import iter_results_for_machine

    machines = sorted(p.parent.name for p in Path(directory).glob("*/machine.json"))
    found = [r for name in machines for r in iter_results_for_machine(str(directory), name)]
    if not found:
        raise ResultsError(f"{directory}: no asv results in it (no */machine.json with results "
                           "beside it); asv writes them to .asv/results when it runs")
    converted = []
    for name in machines:
        of_machine = [r for r in found if r.params.get("machine") == name]
        for result in _latest(of_machine) if of_machine else []:
            run = {"started": _asv_started(result), "finished": None, "argv": [],
                   "harness_version": None,
                   "profile": result.env_vars.get("PERSISTBENCH_PROFILE"),
                   "peak_memory_method": None, "source": "asv",
                   "source_path": str(Path(directory) / name), "commit": result.commit_hash,
                   "asv_env": result.env_name}
            converted.append(_document(_asv_machine(result.params), run, _asv_cells(result)))
    return converted


def _asv_started(result) -> str:
    from datetime import datetime, timezone

    stamps = [v for v in result.started_at.values() if v] or [result.date or 0]
    return datetime.fromtimestamp(min(stamps) / 1000, timezone.utc).isoformat(
        timespec="seconds")


def _asv_cells(result) -> dict:
    cells: dict[tuple[str, str, str], dict] = {}
    names = {**ASV_TIMES, **ASV_TRACKS}
    for key in result.get_all_result_keys():
        short = key.removeprefix(f"{ASV_SUITE}.")
        if short not in names:
            continue
        params = result.get_result_params(key)
        values = result.get_result_value(key, params)
        stats = result.get_result_stats(key, params) or [None] * len(values)
        samples = result.get_result_samples(key, params) or [None] * len(values)
        for combo, value, stat, sample in zip(product(*params), values, stats, samples,
                                              strict=True):
            model, size, fmt = (ast.literal_eval(p) for p in combo)  # asv keeps reprs
            cell = cells.setdefault((model, size, fmt), {**_header(model, size, fmt),
                                                         "status": "ok", "source": "asv"})
            if value is None:  # asv: None is a failure, NaN a skip
                cell.setdefault("failed", []).append(short)
            elif isinstance(value, float) and math.isnan(value):
                cell.setdefault("skipped", []).append(short)
            elif short in ASV_TIMES:
                _add(cell, _timing(ASV_TIMES[short], value,
                                   min(sample) if sample else None,
                                   max(sample) if sample else None,
                                   int((stat or {}).get("repeat") or len(sample or []) or 1),
                                   sample))
            else:
                cell[ASV_TRACKS[short]] = int(value)
    for cell in cells.values():
        measured = [k for k in cell if k.endswith(("_s", "_bytes"))]
        if cell.get("failed"):
            cell["status"] = "error"
            cell["reason"] = f"asv benchmark failed: {', '.join(cell['failed'])} (see asv's log)"
        elif not measured:
            cell["status"] = "unsupported"
            cell["reason"] = "skipped by the asv suite (the format cannot do this model)"
    return cells
