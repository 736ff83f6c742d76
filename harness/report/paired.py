"""Paired statistics for a same-session A/B: one log ratio per (A block, B block) pair.

Each pair was measured back to back in a random order, and each round by fresh processes
(`persistbench.schedule.interleave`), so the pairs' log ratios d_i = log(B_i / A_i) of one
cell are independent, and under "no change" each is as likely to be positive as negative.
That is all the Wilcoxon signed-rank test needs: no normal model, no estimate of the
machine's drift (pairing removed it), and a heavy tail (a pair hit by a burst of other work)
moves one rank, not the mean.

- the change is the Hodges-Lehmann estimate (median of the Walsh averages (d_i + d_j) / 2),
  its interval the exact distribution-free one that inverts the same signed-rank test;
- the test is a minimum-effect test: H0 "the change is within +-threshold", two one-sided
  signed-rank tests of d - log(1 + t) and d + log(1 + t);
- Benjamini-Hochberg across every measure tested, and the intervals at the matching
  false-coverage-rate level, as in `compare_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.stats import false_discovery_control, norm, wilcoxon

MIN_PAIRS = 6  # below, the signed-rank test cannot reach p < 0.05 two-sided (2/2^5)
POWER = 0.8
# Asymptotic efficiency of the signed-rank test against the t test under normality (3/pi):
# the same evidence is worth that many fewer pairs.
WILCOXON_EFFICIENCY = 3 / math.pi


@dataclass
class Paired:
    """One measure of one cell: its pairs and what the test made of them."""

    logs: np.ndarray  # d_i, one per pair
    limit: float  # log(1 + threshold)
    lower_is_better: bool = True
    estimate: float = 0.0  # Hodges-Lehmann, log
    low: float | None = None
    high: float | None = None
    p_value: float | None = None  # BH-adjusted
    verdict: str = "inconclusive"  # "worse", "better", "same", "inconclusive"
    reason: str = ""


@cache
def _signed_rank_counts(n: int) -> np.ndarray:
    """How many of the 2^n sign assignments give each signed-rank sum T+ = 0 .. n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts


def walsh_interval(logs: np.ndarray, level: float) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate and its exact distribution-free interval at `level`."""
    n = len(logs)
    i, j = np.triu_indices(n)
    walsh = np.sort((logs[i] + logs[j]) / 2)
    estimate = float(np.median(walsh))
    cdf = np.cumsum(_signed_rank_counts(n)) / 2.0 ** n
    k = int(np.searchsorted(cdf, (1 - level) / 2, side="right"))  # P(T+ < k) <= tail
    if k == 0:  # too few pairs for this level: the widest interval there is
        return estimate, float(walsh[0]), float(walsh[-1])
    return estimate, float(walsh[k - 1]), float(walsh[len(walsh) - k])


def _p_value(logs: np.ndarray, limit: float) -> float:
    """Two-sided minimum-effect p: the smaller one-sided p beyond +-limit, doubled."""
    ps = []
    for shifted, side in ((logs - limit, "greater"), (logs + limit, "less")):
        if np.count_nonzero(shifted) < MIN_PAIRS:
            ps.append(1.0)
            continue
        ps.append(float(wilcoxon(shifted, alternative=side).pvalue))
    return min(1.0, 2 * min(ps))


def judge_pairs(measures: Sequence[Paired], alpha: float) -> float:
    """Judge every measure together (in place); returns the interval level used."""
    tested = [m for m in measures if len(m.logs) >= MIN_PAIRS]
    for m in measures:
        if len(m.logs) < MIN_PAIRS:
            m.reason = f"{len(m.logs)} pairs (need {MIN_PAIRS})"
            if len(m.logs):
                m.estimate = float(np.median(m.logs))
    if not tested:
        return 1 - alpha
    adjusted = false_discovery_control([_p_value(m.logs, m.limit) for m in tested],
                                       method="bh")
    flagged = int(np.count_nonzero(adjusted <= alpha))
    level = 1 - alpha * max(flagged, 1) / len(tested)  # false-coverage-rate adjusted
    for m, p in zip(tested, adjusted, strict=True):
        m.estimate, m.low, m.high = walsh_interval(m.logs, level)
        m.p_value = float(p)
        if p <= alpha and (m.low > m.limit or m.high < -m.limit):
            m.verdict = "worse" if (m.low > m.limit) == m.lower_is_better else "better"
        elif -m.limit <= m.low and m.high <= m.limit:
            m.verdict = "same"
        else:
            m.reason = "interval crosses the threshold"
    return level


def robust_sd(values) -> float:
    values = np.asarray(values, float)
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if len(values) else 0.0


def detectable(sd: float, n: int, level: float, limit: float) -> float:
    """Smallest change (a ratio) flagged with POWER probability from n pairs of this spread,
    at the per-measure level the correction used (normal approximation, signed-rank
    efficiency)."""
    z = float(norm.isf((1 - level) / 2) + norm.isf(1 - POWER))
    return math.exp(limit + z * sd / math.sqrt(max(n, 1) * WILCOXON_EFFICIENCY))


def pairs_for(target: float, sd: float, level: float, limit: float) -> int | None:
    """Pairs needed to flag a change of `target` (a ratio, e.g. 1.05) with POWER
    probability; None when the threshold itself is beyond the target."""
    room = math.log(target) - limit
    if room <= 0:
        return None
    z = float(norm.isf((1 - level) / 2) + norm.isf(1 - POWER))
    return max(MIN_PAIRS, math.ceil((z * sd / room) ** 2 / WILCOXON_EFFICIENCY))
