"""How precise a timing is: the 95 % interval of its median, from its samples alone.

The interval is distribution-free (order statistics of the sample: the median's rank is
binomial), because timings here are skewed and sometimes bimodal (a one-row predict that
waits tens of ms in some processes), which breaks intervals built on a normal or
log-normal model. It needs 6 samples for 95 %; with fewer there is no interval, and the
report says so instead of printing one.
"""

from __future__ import annotations

import statistics
from math import comb

CONFIDENCE = 0.95


def _binomial_cdf(k: int, n: int) -> float:
    return sum(comb(n, i) for i in range(k + 1)) / 2 ** n


def median_interval(samples: list[float], confidence: float = CONFIDENCE
                    ) -> tuple[float, float] | None:
    """[x_(r), x_(n-r+1)], the widest order statistics whose coverage of the true median is
    at least `confidence`; None when no pair reaches it (fewer than 6 samples at 95 %)."""
    x = sorted(samples)
    n = len(x)
    tail = (1 - confidence) / 2
    rank = 0  # 1-based rank of the lower bound: P(Binomial(n, 1/2) <= rank - 1) <= tail
    while rank < n and _binomial_cdf(rank, n) <= tail:
        rank += 1
    if rank == 0:
        return None
    return x[rank - 1], x[n - rank]


def relative_halfwidth(samples: list[float], confidence: float = CONFIDENCE) -> float | None:
    """The interval's larger distance from the median, as a fraction of the median."""
    found = median_interval(samples, confidence)
    if found is None:
        return None
    mid = statistics.median(samples)
    if mid <= 0:
        return None
    return max(mid - found[0], found[1] - mid) / mid


def parse_precision(text: str) -> float:
    """"5%" or "0.05" -> 0.05; ValueError with what was wrong otherwise."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not a precision; give a fraction such as 5% or "
                         "0.05") from None
    if not 0 < value < 1:
        raise ValueError(f"{text!r} is not a precision between 0 and 100 %")
    return value
