"""The statistics behind `compare`: is a measure's change between two runs real and large?

On a shared machine the variation between runs dwarfs the variation between samples of one
run, so the unit of evidence is the pass (`run --runs K`), as in Kalibera & Jones,
"Rigorous Benchmarking in Reasonable Time" (ISMM 2013):

- the ratio B/A of the medians (all samples of a side pooled); its sampling spread comes
  from a two-level bootstrap: resample the passes of a side, then the samples within each
  chosen pass, take the pooled median (sd of the log ratios of the replicates);
- passes of one run share its machine state, so a cell can differ between two runs by
  more than its passes vary, and a cell whose few passes happen to agree looks more precise
  than it is. The run-to-run spread of a cell is its family's: the robust sd of the log
  ratios of all cells of the family (Efron's empirical null). A cell's sd is that and its
  own bootstrap sd combined as independent parts (root sum of squares): taking only the
  larger of the two flagged, in A/A runs of the same code, a timing that is bimodal between
  processes and whose three passes a side happened to draw one mode in A, the other in B;
- a common factor per measure family (how every `load_s` moved, how every `dump_s` moved)
  is the median of the point log ratios of the family; each measure is judged relative to
  it, so a machine that is slower overall during run B is not read as a regression. The
  median, not the mean, so that a real change in a minority of cells does not move it;
- the test is a minimum-effect test: H0 "the relative change is within the practical
  threshold", a normal-theory p on the log ratio with that spread. Normal, not bootstrap
  percentiles: with 3 passes a side the bootstrap cannot reach the tails a correction over
  hundreds of measures asks for (its support ends at the observed passes);
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import false_discovery_control, norm

ALPHA = 0.05
MIN_PASSES = 2  # per side: with one pass the between-run variation is unknown
MIN_SAMPLES = 3  # per side, over all passes
MIN_FAMILY = 5  # cells a family needs for its own run-to-run spread
BOOTSTRAP = 2000  # replicates per side and measure
# A timing whose samples within one run spread wider than this (upper over lower quartile of
# all its passes pooled) is bimodal or heavy-tailed: a one-row predict that sometimes waits
# tens of ms (kneighbors small pickle-p5: 0.5-196 ms) has no single value to gate on. The
# quartiles, not the extremes: a couple of spikes in fifteen samples is noise the test
# handles, a second mode holding a quarter of them is not.
UNSTABLE_SPREAD = 2.5
MIN_UNSTABLE_SAMPLES = 6
_MAX_CHUNK = 4_000_000  # bootstrap values held in memory at once


@dataclass(frozen=True)
class Evidence:
    """One measure of one cell on both sides, as the test sees it."""

    a: Sequence[Sequence[float]]  # per-pass samples of run A
    b: Sequence[Sequence[float]]
    lower_is_better: bool
    threshold: float  # practical threshold as a fraction: 0.10 = 10 %
    log_factor: float = 0.0  # common factor of the family, log; the measure is judged relative
    offset: float = 0.0  # added to both sides (memory: a floor, so 0 -> 4 kB is no change)
    family: str = ""  # the same measure in other cells: shares run-to-run spread


@dataclass
class Judgement:
    ratio: float  # B/A of the pooled medians
    relative: float  # ratio / common factor
    low: float | None = None  # interval of `relative`
    high: float | None = None
    p_value: float | None = None  # BH-adjusted
    verdict: str = "inconclusive"  # "worse", "better", "same", "inconclusive"
    reason: str = ""
    spread: float = 0.0  # run-level spread of the family (log sd)
    sampling: float = 0.0  # two-level bootstrap sd of the log ratio (passes, samples)


def pooled_median(passes: Sequence[Sequence[float]]) -> float:
    return float(np.median(np.concatenate([np.asarray(p, float) for p in passes])))


def instability(passes: Sequence[Sequence[float]]) -> float | None:
    """Upper over lower quartile of a side's pooled samples; None with too few samples."""
    pooled = np.concatenate([np.asarray(p, float) for p in passes]) if passes else np.array([])
    if len(pooled) < MIN_UNSTABLE_SAMPLES:
        return None
    low, high = np.quantile(pooled, [0.25, 0.75])
    return float(high / low) if low > 0 else math.inf


def enough(passes: Sequence[Sequence[float]]) -> str:
    """Why this side is too thin to judge a noisy measure, or "" when it is not."""
    passes = [p for p in passes if len(p)]
    if len(passes) < MIN_PASSES:
        return f"{len(passes)} pass on a side (need {MIN_PASSES}: run --runs 3)"
    if sum(map(len, passes)) < MIN_SAMPLES:
        return f"fewer than {MIN_SAMPLES} samples on a side"
    return ""


def bootstrap_medians(passes: Sequence[Sequence[float]], n_boot: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap replicates of the pooled median: passes, then samples in a pass."""
    passes = [p for p in passes if len(p)]
    sizes = np.array([len(p) for p in passes])
    k, widest = len(passes), int(sizes.max())
    padded = np.full((k, widest), np.nan)
    for i, p in enumerate(passes):
        padded[i, :len(p)] = p
    out = np.empty(n_boot)
    chunk = max(1, _MAX_CHUNK // (k * widest))
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        chosen = rng.integers(0, k, size=(n, k))
        counts = sizes[chosen]
        picks = (rng.random((n, k, widest)) * counts[..., None]).astype(np.intp)
        values = padded[chosen[..., None], picks]
        values[np.arange(widest) >= counts[..., None]] = np.nan  # beyond a short pass
        ordered = np.sort(values.reshape(n, -1), axis=1)  # NaN sorts last
        valid = counts.sum(axis=1)[:, None]
        middle = np.take_along_axis(ordered, np.hstack([(valid - 1) // 2, valid // 2]), axis=1)
        out[start:start + n] = middle.mean(axis=1)
    return out


def _log_ratios(ev: Evidence, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    a = bootstrap_medians(ev.a, n_boot, rng) + ev.offset
    b = bootstrap_medians(ev.b, n_boot, rng) + ev.offset
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(b) - np.log(a) - ev.log_factor
    return np.nan_to_num(logs, nan=0.0, posinf=50.0, neginf=-50.0)


def _robust_sd(values) -> float:
    values = np.asarray(values, float)
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if len(values) else 0.0


def _sampling_sd(replicates: np.ndarray) -> float:
    return float((np.quantile(replicates, 0.84) - np.quantile(replicates, 0.16)) / 2)


def run_spreads(families: Sequence[str], centres: Sequence[float]) -> dict[str, float]:
    """Per family, how far one cell's ratio scatters from run to run: the empirical null.

    Passes of one run share its machine state (caches, load, memory layout), so a cell can
    differ between two runs by more than its own passes vary, and a cell whose few passes
    happen to agree looks more precise than it is. How far the cells of a family scatter
    around each other (robust sd of their log ratios, as in Efron's empirical null) is what
    a cell's ratio does between runs; real changes in a minority of cells barely move a
    median-based spread. A family with fewer than MIN_FAMILY cells takes the overall value;
    with fewer than MIN_FAMILY measures in all there is no empirical null (0).
    """
    groups: dict[str, list[float]] = {}
    for family, centre in zip(families, centres, strict=True):
        groups.setdefault(family, []).append(centre)
    overall = _robust_sd(centres) if len(centres) >= MIN_FAMILY else 0.0
    return {family: _robust_sd(values) if len(values) >= MIN_FAMILY else overall
            for family, values in groups.items()}


def _p_value(centre: float, sigma: float, limit: float) -> float:
    """Two-sided minimum-effect p of H0 "the change is within +-limit" (normal theory)."""
    excess = abs(centre) - limit
    if sigma <= 0:
        return 0.0 if excess > 0 else 1.0
    return min(1.0, 2 * float(norm.sf(excess / sigma)))


def judge_all(evidence: Sequence[Evidence], alpha: float = ALPHA, seed: int = 0
              ) -> tuple[list[Judgement], float]:
    """Judge every measure together; returns the judgements and the interval level used.

    Measures too thin to judge are "inconclusive" and take no part in the correction.
    """
    rng = np.random.default_rng(seed)
    out: list[Judgement] = []
    tested: list[tuple[int, float, float]] = []  # (index, centre, sampling sd)
    for ev in evidence:
        ratio = _ratio(pooled_median(ev.a) + ev.offset, pooled_median(ev.b) + ev.offset)
        judgement = Judgement(ratio, ratio / math.exp(ev.log_factor) if ratio else ratio)
        out.append(judgement)
        judgement.reason = enough(ev.a) or enough(ev.b)
        if not judgement.reason:
            centre = math.log(judgement.relative) if 0 < judgement.relative < math.inf \
                else math.copysign(50.0, judgement.relative - 1)
            tested.append((len(out) - 1, centre,
                           _sampling_sd(_log_ratios(ev, BOOTSTRAP, rng))))
    m = len(tested)
    if not m:
        return out, 1 - alpha
    spreads = run_spreads([evidence[i].family for i, _, _ in tested],
                          [centre for _, centre, _ in tested])
    sigmas = []
    for i, _, sampling in tested:
        out[i].spread, out[i].sampling = spreads[evidence[i].family], sampling
        sigmas.append(math.hypot(sampling, out[i].spread))
    limits = [math.log1p(evidence[i].threshold) for i, _, _ in tested]
    raw = np.array([_p_value(centre, sigma, limit) for (_, centre, _), sigma, limit
                    in zip(tested, sigmas, limits, strict=True)])
    adjusted = false_discovery_control(raw, method="bh")
    flagged = int(np.count_nonzero(adjusted <= alpha))
    level = alpha * max(flagged, 1) / m  # false-coverage-rate adjusted intervals
    z = float(norm.isf(level / 2))
    for j, (i, centre, _) in enumerate(tested):
        judgement, limit = out[i], limits[j]
        lo, hi = centre - z * sigmas[j], centre + z * sigmas[j]
        judgement.low, judgement.high = math.exp(lo), math.exp(hi)
        judgement.p_value = float(adjusted[j])
        worse_if_up = evidence[i].lower_is_better
        if adjusted[j] <= alpha and (lo > limit or hi < -limit):
            judgement.verdict = "worse" if (lo > limit) == worse_if_up else "better"
        elif -limit <= lo and hi <= limit:
            judgement.verdict = "same"
        else:
            judgement.reason = "interval crosses the threshold"
    return out, 1 - level


def _ratio(a: float, b: float) -> float:
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def common_factor(log_ratios: Sequence[float]) -> float:
    """How a family of timings moved together: the median log ratio (0 when none)."""
    finite = [x for x in log_ratios if math.isfinite(x)]
    return float(np.median(finite)) if finite else 0.0
