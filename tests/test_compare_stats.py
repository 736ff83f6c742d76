"""The change test on synthetic passes whose answer is known: null, shifted, drifted, thin.

Samples are drawn as a real run's are: each pass has its own offset (between-run noise,
the larger part on a shared machine) and samples scatter around it (within-run noise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from persistbench.report.compare_stats import (
    Evidence,
    bootstrap_medians,
    common_factor,
    enough,
    judge_all,
)

BETWEEN, WITHIN = 0.04, 0.03  # log-scale standard deviations of a pass and of a sample


def _side(rng, passes: int = 3, samples: int = 5, scale: float = 1.0,
          between: float = BETWEEN, within: float = WITHIN) -> list[list[float]]:
    out = []
    for _ in range(passes):
        offset = rng.normal(0, between)
        out.append(list(scale * np.exp(offset + rng.normal(0, within, samples))))
    return out


def _evidence(rng, scale_b: float, n: int, log_factor: float = 0.0, **kw) -> list[Evidence]:
    return [Evidence(_side(rng, **kw), _side(rng, scale=scale_b, **kw), True, 0.10,
                     log_factor) for _ in range(n)]


def test_null_flags_nothing_and_calls_tight_intervals_the_same():
    rng = np.random.default_rng(1)
    judged, level = judge_all(_evidence(rng, 1.0, 200))
    assert not [j for j in judged if j.verdict in ("worse", "better")]
    assert level == pytest.approx(1 - 0.05 / 200)  # no flag: the Bonferroni-like level
    assert all(j.p_value is not None and j.low <= j.relative <= j.high for j in judged)
    quiet, _ = judge_all(_evidence(rng, 1.0, 200, between=0.005, within=0.01))  # quiet
    assert {j.verdict for j in quiet} <= {"same", "inconclusive"}
    assert sum(j.verdict == "same" for j in quiet) > 150


def test_a_real_slowdown_is_flagged_among_many_unchanged_measures():
    rng = np.random.default_rng(2)
    evidence = _evidence(rng, 1.0, 190) + _evidence(rng, 1.5, 10)
    judged, level = judge_all(evidence)
    assert [j.verdict for j in judged[190:]] == ["worse"] * 10
    assert not [j for j in judged[:190] if j.verdict != "same" and j.verdict != "inconclusive"]
    for j in judged[190:]:
        assert j.low > 1.10 and j.ratio == pytest.approx(1.5, rel=0.15)
    assert level == pytest.approx(1 - 0.05 * 10 / 200)  # false-coverage-rate level


def test_a_faster_rate_is_better_and_a_slower_rate_worse():
    rng = np.random.default_rng(3)
    faster = Evidence(_side(rng), _side(rng, scale=1.6), False, 0.10)  # rate went up
    slower = Evidence(_side(rng), _side(rng, scale=0.6), False, 0.10)
    judged, _ = judge_all([faster, slower])
    assert [j.verdict for j in judged] == ["better", "worse"]


def test_a_machine_that_drifted_is_judged_relative_to_its_common_factor():
    rng = np.random.default_rng(4)
    drifted = _evidence(rng, 1.3, 50)
    ratios = [math.log(j.ratio) for j in judge_all(drifted)[0]]
    factor = common_factor(ratios)
    assert math.exp(factor) == pytest.approx(1.3, rel=0.05)
    absolute, _ = judge_all(drifted)
    assert sum(j.verdict == "worse" for j in absolute) > 40  # without the factor: all "worse"
    relative, _ = judge_all([Evidence(e.a, e.b, True, 0.10, factor) for e in drifted])
    assert not [j for j in relative if j.verdict in ("worse", "better")]
    assert all(j.relative == pytest.approx(j.ratio / math.exp(factor)) for j in relative)


def test_a_change_near_the_threshold_is_never_called_the_same():
    rng = np.random.default_rng(5)
    judged, _ = judge_all(_evidence(rng, 1.2, 30))
    assert {j.verdict for j in judged} <= {"worse", "inconclusive"}
    assert all(j.high > 1.10 for j in judged)


def test_the_correction_across_measures_withholds_a_lone_weak_flag():
    """Evidence enough for one measure alone, not once it is one of 400 measures."""
    a = [[1.00, 1.01, 0.99], [1.02, 1.03, 1.01], [0.98, 0.99, 0.97]]
    b = [[x * 1.16 for x in p] for p in [[0.98, 0.99, 0.97], [1.03, 1.04, 1.02],
                                         [1.00, 1.01, 0.99]]]
    weak = Evidence(a, b, True, 0.10)
    alone, alone_level = judge_all([weak])
    assert alone[0].verdict == "worse" and alone_level == pytest.approx(0.95)
    rng = np.random.default_rng(6)
    among, level = judge_all([weak, *_evidence(rng, 1.0, 399)])
    assert among[0].verdict == "inconclusive" and among[0].p_value > 0.05
    assert level == pytest.approx(1 - 0.05 / 400)


def test_one_pass_a_side_is_inconclusive_and_untested():
    rng = np.random.default_rng(7)
    one = Evidence(_side(rng, passes=1), _side(rng, passes=1, scale=3.0), True, 0.10)
    thin = Evidence([[1.0], [1.1]], [[1.0], [1.2]], True, 0.10)
    judged, _ = judge_all([one, thin])
    assert [j.verdict for j in judged] == ["inconclusive", "inconclusive"]
    assert judged[0].ratio == pytest.approx(3.0, rel=0.2)
    assert all(j.p_value is None and j.low is None for j in judged)
    assert "1 pass" in judged[0].reason and "samples" in judged[1].reason
    assert enough([[1.0, 2.0], [1.5]]) == ""


def test_a_memory_floor_hides_page_noise_but_not_a_real_growth():
    zero = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    pages = [[4096.0, 8192.0], [4096.0, 0.0], [8192.0, 4096.0]]
    grown = [[50e6, 51e6], [50e6, 49e6], [52e6, 50e6]]
    judged, _ = judge_all([Evidence(zero, pages, True, 0.05, offset=2**20),
                           Evidence(zero, grown, True, 0.05, offset=2**20)])
    assert [j.verdict for j in judged] == ["same", "worse"]


def test_the_bootstrap_resamples_passes_then_samples():
    rng = np.random.default_rng(8)
    passes = [[1.0] * 5, [2.0] * 5, [3.0] * 5]
    medians = bootstrap_medians(passes, 3000, rng)
    # Only the passes vary: every replicate's median is one of the pass values.
    assert set(np.unique(medians)) <= {1.0, 2.0, 3.0}
    # The middle of three passes drawn with replacement is pass 2 in 13 of 27 draws.
    assert np.mean(medians == 2.0) == pytest.approx(13 / 27, abs=0.04)
    ragged = bootstrap_medians([[1.0], [2.0, 2.0, 2.0]], 500, rng)
    assert set(np.unique(ragged)) <= {1.0, 1.5, 2.0}


def test_a_cell_unsteady_within_runs_adds_its_own_spread_to_its_familys():
    """Its passes scatter as much as its family's cells scatter between runs: both count.

    40 steady cells (one sample a pass, every pass alike) set the family's run-to-run spread;
    the last cell's third pass of B is slower by k, so its bootstrap sd is log(k)/2 (the
    middle of three passes drawn with replacement is the slow one in 7 of 27 draws, beyond
    the 84th percentile's reach from below). The shift that the larger of the two sds
    would flag is inconclusive; a larger one is still flagged.
    """
    logs = np.linspace(-0.1, 0.1, 40)
    steady = [Evidence([[1.0]] * 3, [[math.exp(x)]] * 3, True, 0.10) for x in logs]
    spread = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
    k = math.exp(2 * spread)

    def unsteady(shift: float) -> Evidence:
        return Evidence([[1.0]] * 3, [[shift], [shift], [shift * k]], True, 0.10)

    z = norm.isf(0.05 / 41 / 2)  # nothing else flagged: the Bonferroni-like level
    limit = math.log(1.10)
    shift = limit + z * spread * 1.2  # beyond z x max(sds), short of z x their root sum
    assert limit + z * spread < shift < limit + z * spread * math.sqrt(2)
    judged, _ = judge_all([*steady, unsteady(math.exp(shift))])
    last = judged[-1]
    assert last.sampling == pytest.approx(math.log(k) / 2, rel=1e-6)
    assert last.spread == pytest.approx(spread, rel=0.05)  # the cell itself is one of 41
    assert last.verdict == "inconclusive" and last.high > 1.10
    assert math.log(last.high / last.low) / 2 == pytest.approx(
        z * math.hypot(last.sampling, last.spread), rel=1e-6)
    further, _ = judge_all([*steady, unsteady(math.exp(limit + z * spread * 2))])
    assert further[-1].verdict == "worse"
