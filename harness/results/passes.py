"""Fold the repeated passes of one cell (`run --runs K`) into one cell record.

Between-run variation dominates within-run variation on a shared machine, so the pass, not
the sample, is the unit of evidence a comparison needs. The merged record keeps the shape
every reader knows (stats dicts, scalars, sample lists: values over all passes) and adds
what a comparison needs to see each pass apart:

- a stats dict (`{"min", "median", "max", "n"}`) gains `samples` (all passes pooled) and
  `passes` (one sample list per pass);
- a scalar measure (`file_bytes`, `load_peak_rss_bytes`, …) becomes the median over all
  passes and gains a sibling `<key>_passes` (one sample list per pass: the pass's kept
  samples when it has them, else its single value);
- sample lists are pooled, booleans must hold on every pass, `elapsed_s` adds up;
- `pass_status` lists each pass's status; a pass that failed leaves its status and reason
  on the record (so the cell is not silently compared) and contributes no measures.

Merging is a fold (record so far + one new pass), so an interrupted run resumes mid-pass.
"""

from __future__ import annotations

import statistics
from typing import Any

from persistbench.results.schema import record_failure

PASSES_SUFFIX = "_passes"
HIGHER_IS_BETTER = {"label_agreement"}
_NOT_MERGED = {"cell_id", "experiment", "model", "size", "format", "variant", "status",
               "reason", "pass_status", "traceback", "signal"}


def measure_kind(key: str) -> tuple[str, bool] | None:
    """(unit, lower is better) of a key named after its unit, or None if it is no measure.

    `_s` and `_bytes` are lower-is-better, `_per_s` and `_bps` rates higher-is-better,
    `label_agreement` a higher-is-better score and any `_diff` a lower-is-better one.
    """
    leaf = key.rsplit(".", 1)[-1]
    if leaf in HIGHER_IS_BETTER:
        return "", False
    if leaf.endswith("_diff"):
        return "", True
    if leaf.endswith(("_per_s", "_bps")):
        return "B/s" if leaf.endswith("_bps") else "", False
    if leaf.endswith("_s"):
        return "s", True
    if leaf.endswith("_bytes"):
        return "B", True
    return None


def samples_key(key: str) -> str:
    """Where the raw samples of a measure are kept: `x_s_samples`, `x_samples_bytes`, …"""
    if key.startswith("median_"):  # {"median_s": …, "samples_s": […]}
        return "samples_" + key[len("median_"):]
    if key.endswith("_bytes"):
        return key[:-len("_bytes")] + "_samples_bytes"
    return f"{key}_samples"


def is_stats(value: Any) -> bool:
    return isinstance(value, dict) and "median" in value and "n" in value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> list[float] | None:
    return list(value) if isinstance(value, list) and all(map(_number, value)) else None


def _pass_samples_of_stats(stats: dict, container: dict, key: str) -> list[float]:
    """The samples one pass kept for a stats dict: inside it, beside it, or its median."""
    for found in (stats.get("samples"), container.get(samples_key(key))):
        values = _numbers(found)
        if values:
            return values
    return [] if stats.get("median") is None else [float(stats["median"])]


def _merge_stats(prior: dict | None, stats: dict, container: dict, key: str) -> dict:
    passes = [list(p) for p in (prior or {}).get("passes", [])]
    if prior is not None and not passes:  # a plain record from a single-pass run
        passes = [_pass_samples_of_stats(prior, {}, key)]
    this = _pass_samples_of_stats(stats, container, key)
    if this:
        passes.append(this)
    pooled = [v for p in passes for v in p]
    out = {k: v for k, v in stats.items() if k not in ("samples", "passes")}
    if pooled:
        out.update(min=min(pooled), median=statistics.median(pooled), max=max(pooled))
    out.update(n=len(pooled), samples=pooled, passes=passes)
    return out


def _merge_scalar(out: dict, prior: dict, container: dict, key: str, value: float) -> None:
    history = prior.get(key + PASSES_SUFFIX)
    passes = [list(p) for p in history] if isinstance(history, list) else []
    if not passes and _number(prior.get(key)):
        passes = [_numbers(prior.get(samples_key(key))) or [prior[key]]]
    passes.append(_numbers(container.get(samples_key(key))) or [value])
    median = statistics.median(v for p in passes for v in p)
    out[key] = round(median) if isinstance(value, int) else median
    out[key + PASSES_SUFFIX] = passes


def _merge(prior: dict, new: dict, top: bool = False) -> dict:
    out = dict(prior)
    for key, value in new.items():
        if (top and key in _NOT_MERGED) or key.endswith(PASSES_SUFFIX):
            continue
        old = prior.get(key)
        if top and key == "elapsed_s" and _number(value):
            out[key] = (old if _number(old) else 0.0) + value
        elif top and key == "warnings" and isinstance(value, list):
            out[key] = sorted(set(old or []) | set(value))
        elif top and key == "overhead" and isinstance(value, list):
            out[key] = (old if isinstance(old, list) else []) + value
        elif is_stats(value):
            out[key] = _merge_stats(old if is_stats(old) else None, value, new, key)
        elif isinstance(value, dict):
            out[key] = _merge(old if isinstance(old, dict) else {}, value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            olds = old if isinstance(old, list) and len(old) == len(value) else [{}] * len(value)
            out[key] = [_merge(o if isinstance(o, dict) else {}, v)
                        for o, v in zip(olds, value, strict=True)]
        elif "samples" in key and _numbers(value) is not None:
            out[key] = (_numbers(old) or []) + _numbers(value)
        elif isinstance(value, bool):
            out[key] = value if not isinstance(old, bool) else old and value
        elif _number(value) and measure_kind(key):
            _merge_scalar(out, prior, new, key, value)
        elif key not in prior:
            out[key] = value
    return out


def pool_workers(outcomes: list[dict]) -> dict:
    """The measures of one step run in several worker processes, as one pass's measures.

    A process's timings move together for its whole life (pyperf spreads its samples over
    20 processes for this reason), so a pass may sample in several workers (`--workers`).
    Their samples are pooled: stats dicts and sample lists
    concatenated, a per-process scalar (`load_first_s`) becomes the median with its values
    in `<key>_samples`; the pass stays one unit of evidence for `compare`.
    """
    merged: dict = {}
    for outcome in outcomes:
        merged = _merge(merged, outcome)
    return _flatten(merged)


def _flatten(container: dict) -> dict:
    out = {}
    for key, value in container.items():
        if key.endswith(PASSES_SUFFIX):
            name = key[:-len(PASSES_SUFFIX)]
            out.setdefault(samples_key(name), [v for p in value for v in p])
        elif is_stats(value):
            out[key] = {k: v for k, v in value.items() if k != "passes"}
        elif isinstance(value, dict):
            out[key] = _flatten(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[key] = [_flatten(v) for v in value]
        else:
            out[key] = value
    return out


def passes_done(record: dict | None) -> int:
    if record is None:
        return 0
    return len(record["pass_status"]) if "pass_status" in record else 1


def add_pass(record: dict | None, new: dict) -> dict:
    """The cell record after one more pass; `record` is None before the first pass."""
    if record is not None and "pass_status" not in record:  # written by a single-pass run
        record = add_pass(None, record)
    base = record or {}
    history = list(base.get("pass_status", []))
    if new["status"] == "ok":
        merged = _merge(base, new, top=True)
    else:
        merged = dict(base) if base else dict(new)
    for key in ("cell_id", "experiment", "model", "size", "format", "variant"):
        if key in new:
            merged[key] = new[key]
    history.append(new["status"])
    merged["pass_status"] = history
    if base.get("status", "ok") != "ok":
        merged["status"], merged["reason"] = base["status"], base.get("reason")
    elif new["status"] == "unsupported":  # the same on every pass: not measured again
        merged["status"], merged["reason"] = new["status"], new.get("reason")
    elif new["status"] != "ok":
        record_failure(merged, new, f"pass {len(history)}")
    else:
        merged["status"] = "ok"
        merged.pop("reason", None)
    return merged


def _select(container: dict, keep: slice) -> dict:
    out = dict(container)
    for key, value in container.items():
        if is_stats(value) and isinstance(value.get("passes"), list):
            passes = value["passes"][keep]
            pooled = [v for p in passes for v in p]
            out[key] = {**value, "passes": passes, "samples": pooled, "n": len(pooled)}
            if pooled:
                out[key].update(min=min(pooled), median=statistics.median(pooled),
                                max=max(pooled))
        elif key.endswith(PASSES_SUFFIX) and isinstance(value, list):
            name = key[:-len(PASSES_SUFFIX)]
            out[key] = value[keep]
            pooled = [v for p in out[key] for v in p]
            if pooled and _number(container.get(name)):
                out[name] = statistics.median(pooled)
        elif isinstance(value, dict):
            out[key] = _select(value, keep)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[key] = [_select(v, keep) for v in value]
    return out


def split_passes(data: dict) -> tuple[dict, dict]:
    """Two results from one: the first half of every cell's passes, and the second half.

    The halves of one run are two runs of the same code, so comparing them measures how
    often the comparison rule flags a change that is not there, on this machine.
    """
    halves = []
    for part in ("first", "second"):
        cells = []
        for cell in data["cells"]:
            k = passes_done(cell)
            keep = slice(0, k // 2) if part == "first" else slice(k // 2, k)
            cells.append(_select(cell, keep))
        halves.append({**data, "cells": cells})
    return halves[0], halves[1]
