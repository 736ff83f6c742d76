"""Side-by-side comparison of runs: per matching cell, the ratio B/A of every measure.

A measure is any number of a cell whose key names its unit: `_s` and `_bytes` (lower is
better), `_per_s` and `_bps` (higher is better), plus `label_agreement` (higher) and
any `_diff` (lower). Nested dicts and lists of dicts (e.g. inference latencies) are
walked, so new experiments are compared without code here.

The decision (see `compare_stats` for the statistics):
- times and peak memory are noisy: judged from the passes of `run --runs K` by a two-level
  bootstrap interval of the ratio of medians, relative to the common factor of the
  measure's family, flagged only when the interval lies entirely beyond the practical
  threshold (`TIME_THRESHOLD_PCT`, `MEMORY_THRESHOLD_PCT`) after a Benjamini-Hochberg
  correction across every measure compared; with fewer than 2 passes a side they are
  "inconclusive" and never fail the gate. Peak-memory changes under `MEMORY_FLOOR_BYTES`
  are page-granularity noise;
- file sizes and fidelity scores are deterministic: any change is real and flagged, no
  statistics needed.
Across machines, times are also shown normalised by each machine's calibrated bandwidth
(time x bandwidth), so a machine that is faster overall does not hide a format that got
relatively slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from persistbench.report.compare_stats import (
    ALPHA,
    MIN_FAMILY,
    UNSTABLE_SPREAD,
    Evidence,
    common_factor,
    instability,
    judge_all,
)
from persistbench.report.values import Num
from persistbench.results.methods import differing, run_methods
from persistbench.results.passes import PASSES_SUFFIX, is_stats, measure_kind, samples_key
from persistbench.results.vocabulary import cpu_key

CPU_SUFFIX = cpu_key("")  # "_cpu_s"

TIME_THRESHOLD_PCT = 10.0
MEMORY_THRESHOLD_PCT = 5.0
MEMORY_FLOOR_BYTES = 2**20
METHOD_DIFFERS = "method differs"  # taken differently on each side: shown, never ratioed
# What the gate judges by default: what a user decides on. The rest (first predictions,
# server-start parts, serving experiments' figures) is judged and listed with `--all`.
HEADLINE = ("load_s", "dump_s", "load_cold_s", "start_total_s", "load_peak_rss_bytes",
            "dump_peak_rss_bytes", "file_bytes")
# Warm timings judged by the CPU time of their runs when both runs recorded it: the drift
# control taken in the same process over the same runs. Between two runs on a shared machine
# what moves a run of a few milliseconds is mostly how long it waited for the CPU (a 1.6 ms
# forest load read 9 ms of wall time beside a busy loop on its core); its CPU time leaves
# the wait out. A cold load waits for the disk, which is its point: judged by wall time.
CPU_JUDGED = ("load_s", "dump_s")
META = {"cell_id", "experiment", "model", "size", "format", "variant", "status", "reason",
        "elapsed_s", "overhead", "pass_status"}


@dataclass(frozen=True)
class Measure:
    key: str
    value: float
    unit: str  # "s", "B", "B/s" (a rate) or "" (a score)
    lower_is_better: bool
    samples: tuple[float, ...] = ()
    spread: tuple[float, float] | None = None  # (min, max) of two or more repeats
    passes: tuple[tuple[float, ...], ...] = ()  # per-pass samples, one pass at least
    n: int = 1  # samples the value summarises (a stats dict's n, else the samples kept)
    cpu: bool = False  # the figures are the CPU time of the runs, not their wall time

    @property
    def noisy(self) -> bool:
        """Times, rates and memory peaks vary run to run; sizes and scores do not."""
        return self.unit in ("s", "B/s") or self.key.endswith("_per_s") or (
            self.unit == "B" and not is_file_size(self.key))

    @property
    def family(self) -> str:
        """Measures that drift together: the same key in every cell."""
        return self.key


def is_file_size(key: str) -> bool:
    return "file" in key.rsplit(".", 1)[-1]


def _spread(samples: tuple[float, ...], stats: dict | None = None) -> tuple[float, float] | None:
    if len(samples) >= 2:
        return min(samples), max(samples)
    if stats and stats.get("n", 0) >= 2 and None not in (stats.get("min"), stats.get("max")):
        return float(stats["min"]), float(stats["max"])
    return None


def _floats(found) -> tuple[float, ...]:
    return tuple(float(v) for v in found) if isinstance(found, list) else ()


def _passes(kept, samples: tuple[float, ...], value: float) -> tuple[tuple[float, ...], ...]:
    """Per-pass samples as kept by `run --runs K`, else the one pass this file holds."""
    if isinstance(kept, list) and kept and all(isinstance(p, list) for p in kept):
        return tuple(_floats(p) for p in kept if p)
    return (samples or (value,),)


def _identity(item: dict) -> str:
    """How an entry of a list is recognised on both sides: its labels, e.g. `sklearn/predict/1`."""
    parts = [str(v) for k, v in item.items()
             if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)
                                       and measure_kind(k) is None and k != "n")]
    return "/".join(parts)


def measures(container: dict, prefix: str = "") -> dict[str, Measure]:
    out: dict[str, Measure] = {}
    for key, value in container.items():
        if (not prefix and key in META) or "samples" in key or key.endswith(PASSES_SUFFIX):
            continue
        path = f"{prefix}{key}"
        kind = measure_kind(key)
        if is_stats(value) and kind:
            if value["median"] is not None:
                samples = _floats(value.get("samples")) or _floats(
                    container.get(samples_key(key)))
                median = float(value["median"])
                out[path] = Measure(path, median, kind[0], kind[1], samples,
                                    _spread(samples, value),
                                    _passes(value.get("passes"), samples, median),
                                    int(value.get("n") or len(samples) or 1))
        elif isinstance(value, dict):
            out.update(measures(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            ids = [_identity(v) for v in value]
            if len(set(ids)) < len(ids) or not all(ids):
                ids = [str(i) for i in range(len(value))]
            for ident, item in zip(ids, value, strict=True):
                out.update(measures(item, f"{path}[{ident}]."))
        elif kind and isinstance(value, int | float) and not isinstance(value, bool):
            samples = _floats(container.get(samples_key(key)))
            out[path] = Measure(path, float(value), kind[0], kind[1], samples, _spread(samples),
                                _passes(container.get(key + PASSES_SUFFIX), samples,
                                        float(value)), len(samples) or 1)
    return out


@dataclass
class Row:
    cell_id: str
    key: str
    a: Num
    b: Num
    ratio: float
    normalised: float | None
    p_value: float | None  # Benjamini-Hochberg adjusted; None when not tested
    worse_by: float  # fraction: 0.25 = 25 % worse, negative = better
    decisive: bool  # the change is real as far as the passes can tell
    flag: str = ""  # "worse", "better" or ""
    verdict: str = ""  # "worse", "better", "same" or "inconclusive"
    relative: float | None = None  # ratio / common factor of the family
    low: float | None = None  # interval of `relative`
    high: float | None = None
    passes: tuple[int, int] = (0, 0)  # passes of A and B
    note: str = ""  # why inconclusive, or "exact"
    sampling: float | None = None  # two-level bootstrap sd of the log ratio (tested only)


@dataclass
class Comparison:
    a_path: str
    b_path: str
    a_machine: str
    b_machine: str
    threshold: float
    memory_threshold: float = MEMORY_THRESHOLD_PCT
    alpha: float = ALPHA
    level: float = 1 - ALPHA  # coverage of the intervals shown
    tested: int = 0  # measures that took part in the correction
    drift: bool = True
    factors: dict[str, float] = field(default_factory=dict)  # family -> common factor
    calibration: dict[str, float] = field(default_factory=dict)  # name -> ratio B/A
    spreads: dict[str, float] = field(default_factory=dict)  # family -> run-to-run log sd
    every_measure: bool = False  # judge every measure, not only HEADLINE
    unjudged: int = 0  # measures left out (not headline)
    rows: list[Row] = field(default_factory=list)
    status_changes: list[tuple[str, str, str]] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def cross_machine(self) -> bool:
        return self.a_machine != self.b_machine

    def flagged(self) -> list[Row]:
        return [r for r in self.rows if r.flag]

    def ordered(self) -> list[Row]:
        """Flagged first (worst first), then inconclusive, then the rest."""
        rank = {"worse": 0, "better": 1, "unstable": 2, "inconclusive": 3, METHOD_DIFFERS: 4}
        return sorted(self.rows, key=lambda r: (rank.get(r.verdict, 3), -abs(r.worse_by)
                                                 if math.isfinite(r.worse_by) else -math.inf))

    def counts(self) -> dict[str, int]:
        out = {"worse": 0, "better": 0, "same": 0, "inconclusive": 0, "unstable": 0,
               METHOD_DIFFERS: 0}
        for r in self.rows:
            out[r.verdict] += 1
        return out

    def shared_shift(self) -> dict[str, float]:
        """Families whose timings all moved beyond the threshold together."""
        limit = 1 + self.threshold / 100
        return {k: v for k, v in self.factors.items() if v > limit or v < 1 / limit}

    def regressions(self, pct: float = 0.0) -> list[str]:
        """Flagged regressions beyond `pct` percent (plus cells that stopped working)."""
        worse = [f"{r.cell_id} {r.key}: {r.worse_by:+.0%}" for r in self.rows
                 if r.flag == "worse" and r.worse_by * 100 > pct]
        broken = [f"{cid}: {sa} -> {sb}" for cid, sa, sb in self.status_changes if sa == "ok"]
        return worse + broken


def _ratio(a: float, b: float) -> float:
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def bandwidth_key(key: str) -> str:
    """Which calibrated bandwidth a time is normalised by."""
    if "cold" in key:
        return "cold_read_bps"
    if key.startswith(("load", "dump")):
        return "page_cache_read_bps"
    return "memory_copy_bps"


def _normalised(m: Measure, ratio: float, cal_a: dict, cal_b: dict) -> float | None:
    """Times scale with the bandwidth (time x bandwidth), rates inversely; sizes do not."""
    is_rate = m.key.endswith(("_per_s", "_bps"))
    bw = bandwidth_key(m.key)
    if not (m.unit == "s" or is_rate) or not (cal_a.get(bw) and cal_b.get(bw)) \
            or math.isinf(ratio):
        return None
    scale = cal_b[bw] / cal_a[bw]
    return ratio / scale if is_rate else ratio * scale


def _is_time(m: Measure) -> bool:
    return m.unit == "s" or m.unit == "B/s" or m.key.endswith("_per_s")


def _factors(pairs: list[tuple[str, Measure, Measure]]) -> dict[str, float]:
    """The common factor of each family of timings (median log ratio B/A over the cells)."""
    logs: dict[str, list[float]] = {}
    for _, ma, mb in pairs:
        if _is_time(ma) and ma.value > 0 and mb.value > 0:
            logs.setdefault(ma.family, []).append(math.log(mb.value / ma.value))
    every_time = [x for family in logs.values() for x in family]
    overall = common_factor(every_time)
    return {family: math.exp(common_factor(values) if len(values) >= MIN_FAMILY else overall)
            for family, values in logs.items()}


def compare(a: dict, b: dict, a_path: str = "A", b_path: str = "B",
            threshold_pct: float = TIME_THRESHOLD_PCT,
            memory_threshold_pct: float = MEMORY_THRESHOLD_PCT, alpha: float = ALPHA,
            drift: bool = True, every_measure: bool = False) -> Comparison:
    cells_a = {c["cell_id"]: c for c in a["cells"]}
    cells_b = {c["cell_id"]: c for c in b["cells"]}
    out = Comparison(a_path, b_path, a["machine"]["machine_id"], b["machine"]["machine_id"],
                     threshold_pct, memory_threshold_pct, alpha, drift=drift,
                     every_measure=every_measure)
    out.only_a = [cid for cid in cells_a if cid not in cells_b]
    out.only_b = [cid for cid in cells_b if cid not in cells_a]
    cal_a = a["machine"].get("calibration") or {}
    cal_b = b["machine"].get("calibration") or {}
    out.calibration = {k: cal_b[k] / cal_a[k] for k in cal_a
                       if k.endswith("_bps") and cal_a.get(k) and cal_b.get(k)}
    pairs: list[tuple[str, Measure, Measure]] = []
    methods_a, methods_b = run_methods(a["run"]), run_methods(b["run"])
    for cid, ca in cells_a.items():
        cb = cells_b.get(cid)
        if cb is None:
            continue
        if ca["status"] != cb["status"]:
            out.status_changes.append((cid, ca["status"], cb["status"]))
        if ca["status"] != "ok" or cb["status"] != "ok":
            continue
        all_a, mb = measures(ca), measures(cb)
        for key, ma in all_a.items():
            if key not in mb or key.endswith(CPU_SUFFIX):  # a control, judged with its time
                continue
            if not every_measure and key not in HEADLINE:
                out.unjudged += 1
                continue
            diff = differing(key, methods_a, methods_b)
            if diff:
                out.rows.append(_apart_row(cid, ma, mb[key], diff))
            elif key in CPU_JUDGED and cpu_key(key) in all_a and cpu_key(key) in mb:
                pairs.append((cid, by_cpu(ma, all_a[cpu_key(key)]),
                              by_cpu(mb[key], mb[cpu_key(key)])))
            else:
                pairs.append((cid, ma, mb[key]))
    out.factors = _factors(pairs) if drift else {}
    unstable = {(cid, ma.key): spread for cid, ma, mb in pairs
                if (spread := _unstable(ma, mb)) is not None}
    noisy = [(cid, ma, mb) for cid, ma, mb in pairs if ma.noisy and not _under_floor(ma, mb)
             and (cid, ma.key) not in unstable]
    judgements, out.level = judge_all([_evidence(ma, mb, out) for _, ma, mb in noisy], alpha)
    out.tested = sum(j.p_value is not None for j in judgements)
    out.spreads = {ma.family: j.spread for (_, ma, _), j in zip(noisy, judgements, strict=True)
                   if j.p_value is not None}
    judged = {(cid, ma.key): j for (cid, ma, _), j in zip(noisy, judgements, strict=True)}
    for cid, ma, mb in pairs:
        row = _row(cid, ma, mb, judged.get((cid, ma.key)), cal_a, cal_b, out.cross_machine)
        if not ma.noisy and _varies(ma, mb):
            row.verdict, row.flag, row.decisive = "unstable", "", False
            row.note = (f"differs between passes of one run (A {_range(ma)}, B {_range(mb)}): "
                        "not deterministic here; never fails the gate")
        elif (cid, ma.key) in unstable:
            row.verdict, row.flag, row.decisive = "unstable", "", False
            row.note = (f"samples spread x{unstable[cid, ma.key]:.1f} between their quartiles "
                        f"within a run (over x{UNSTABLE_SPREAD:g}: bimodal or heavy-tailed); "
                        f"A {_range(ma)}, B {_range(mb)}: never fails the gate")
        out.rows.append(row)
    return out


def by_cpu(wall: Measure, cpu: Measure) -> Measure:
    """A timing as judged by the CPU time of the same runs (its name kept)."""
    return replace(cpu, key=wall.key, cpu=True)


def _varies(ma: Measure, mb: Measure) -> bool:
    """A figure taken as deterministic (a file size) that took several values within one run
    on either side: kneighbors' ONNX file is 43,494 or 43,505 bytes, whichever a pass draws,
    so a difference between runs is no change of the code."""
    return any(len({v for p in m.passes for v in p}) > 1 for m in (ma, mb))


def _unstable(ma: Measure, mb: Measure) -> float | None:
    """The wider quartile spread of the two sides when either is beyond UNSTABLE_SPREAD."""
    if not _is_time(ma):
        return None
    spreads = [s for s in (instability(ma.passes), instability(mb.passes)) if s is not None]
    return max(spreads) if spreads and max(spreads) > UNSTABLE_SPREAD else None


def _range(m: Measure) -> str:
    values = [v for p in m.passes for v in p]
    return f"{min(values):.3g}-{max(values):.3g}"


def _under_floor(ma: Measure, mb: Measure) -> bool:
    """A peak-memory change smaller than a page-granularity floor is no change."""
    return ma.unit == "B" and abs(mb.value - ma.value) < MEMORY_FLOOR_BYTES


def _evidence(ma: Measure, mb: Measure, comp: Comparison) -> Evidence:
    memory = ma.unit == "B"
    pct = comp.memory_threshold if memory else comp.threshold
    factor = comp.factors.get(ma.family, 1.0) if _is_time(ma) else 1.0
    return Evidence(ma.passes, mb.passes, ma.lower_is_better, pct / 100, math.log(factor),
                    MEMORY_FLOOR_BYTES if memory else 0.0, ma.family)


def _worse_by(ratio: float, lower_is_better: bool) -> float:
    if lower_is_better:
        return ratio - 1
    return math.inf if ratio == 0 else 1 / ratio - 1


def _apart_row(cid: str, ma: Measure, mb: Measure, diff: dict[str, tuple[str, str]]) -> Row:
    """Both figures, no ratio: they were taken with different methods."""
    how = "; ".join(f"{family}: {a} (A) vs {b} (B)" for family, (a, b) in diff.items())
    return Row(cid, ma.key, Num(ma.value, ma.unit), Num(mb.value, mb.unit), math.nan, None,
               None, 0.0, False, verdict=METHOD_DIFFERS,
               passes=(len(ma.passes), len(mb.passes)), note=how)


def _row(cid: str, ma: Measure, mb: Measure, judgement, cal_a: dict, cal_b: dict,
         cross: bool) -> Row:
    ratio = _ratio(ma.value, mb.value)
    row = Row(cid, ma.key, Num(ma.value, ma.unit), Num(mb.value, mb.unit), ratio,
              _normalised(ma, ratio, cal_a, cal_b) if cross else None, None,
              _worse_by(ratio, ma.lower_is_better), False,
              passes=(len(ma.passes), len(mb.passes)))
    if judgement is None and ma.noisy:  # a peak-memory change under the floor
        row.note = f"under {MEMORY_FLOOR_BYTES // 2**20} MiB"
        row.verdict = "same"
    elif judgement is None:  # deterministic: any change is real
        row.note = "exact"
        row.decisive = True
        row.verdict = "same" if ratio == 1 else ("worse" if row.worse_by > 0 else "better")
    else:
        row.relative, row.low, row.high = judgement.relative, judgement.low, judgement.high
        row.p_value, row.verdict, row.note = judgement.p_value, judgement.verdict, \
            judgement.reason
        row.sampling = judgement.sampling if judgement.p_value is not None else None
        row.decisive = row.verdict in ("worse", "better")
        if row.decisive:
            row.worse_by = _worse_by(judgement.relative, ma.lower_is_better)
    if row.verdict in ("worse", "better"):
        row.flag = row.verdict
    if ma.cpu:
        row.note = "; ".join(n for n in ("CPU time", row.note) if n)
    return row
