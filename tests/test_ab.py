"""Same-session A/B: the paired statistics on synthetic drifting samples whose answer is
known, the power statement, the analysis of a results file, the sides, and one real
session with the harness's own interpreter on both sides (slow)."""

from __future__ import annotations

import math
import sys
from itertools import product

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from persistbench.commands.ab import side_environment
from persistbench.envs.builder import pinned_requirements
from persistbench.report.ab import analyse
from persistbench.report.paired import (
    MIN_PAIRS,
    Paired,
    _signed_rank_counts,
    detectable,
    judge_pairs,
    pairs_for,
    walsh_interval,
)
from persistbench.sources.models import UsageError

LIMIT = math.log1p(0.01)


def _drifting_round(rng, n: int, slower: float) -> tuple[np.ndarray, np.ndarray]:
    """One round's alternating samples on a machine whose speed drifts 2x up and down: each
    pair of samples shares the machine's state of that moment."""
    drift = np.exp(0.7 * np.sin(np.linspace(0, 6, n) + rng.uniform(0, 6)))
    a = drift * np.exp(rng.normal(0, 0.03, n))
    b = slower * drift * np.exp(rng.normal(0, 0.03, n))
    return a, b


def _round_logs(rng, rounds: int, slower: float, n: int = 20) -> np.ndarray:
    out = []
    for _ in range(rounds):
        a, b = _drifting_round(rng, n, slower)
        out.append(np.median(np.log(b) - np.log(a)))
    return np.asarray(out)


def test_signed_rank_distribution_is_exact():
    counts = _signed_rank_counts(4)  # 16 sign assignments of ranks 1..4, sums 0..10
    assert counts.sum() == 16 and counts[0] == 1 and counts[10] == 1 and counts[5] == 2
    assert list(counts) == list(counts[::-1])  # symmetric


def test_walsh_interval_known_case():
    logs = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    estimate, low, high = walsh_interval(logs, 0.95)
    assert estimate == pytest.approx(0.35)
    # n = 6 at 95 %: the critical value is 0, so the interval is the extreme Walsh averages
    assert (low, high) == pytest.approx((0.1, 0.6))
    _, low90, high90 = walsh_interval(logs, 0.90)  # P(T+ <= 2) = 4/64 > 0.05, <= 1: 2/64
    assert low90 > low and high90 < high


def test_pairing_sees_five_percent_through_drift_that_hides_it_unpaired():
    rng = np.random.default_rng(1)
    a, b = _drifting_round(rng, 200, 1.05)
    assert mannwhitneyu(a, b).pvalue > 0.05  # the drift swamps it without the pairs
    measures = [Paired(_round_logs(rng, 10, 1.05), LIMIT) for _ in range(20)]
    judge_pairs(measures, 0.05)
    assert all(m.verdict == "worse" for m in measures)
    assert all(m.low > LIMIT and 1.03 < math.exp(m.estimate) < 1.07 for m in measures)


def test_no_change_under_drift_flags_nothing():
    rng = np.random.default_rng(2)
    measures = [Paired(_round_logs(rng, 10, 1.0), LIMIT) for _ in range(200)]
    judge_pairs(measures, 0.05)
    assert not [m for m in measures if m.verdict in ("worse", "better")]
    assert sum(m.low <= 0 <= m.high for m in measures) >= 195


def test_faster_is_better_and_rates_flip():
    rng = np.random.default_rng(3)
    faster = Paired(_round_logs(rng, 10, 0.9), LIMIT)
    rate = Paired(_round_logs(rng, 10, 0.9), LIMIT, lower_is_better=False)
    judge_pairs([faster, rate], 0.05)
    assert (faster.verdict, rate.verdict) == ("better", "worse")


def test_too_few_pairs_is_inconclusive():
    m = Paired(np.full(MIN_PAIRS - 1, 0.5), LIMIT)
    judge_pairs([m], 0.05)
    assert m.verdict == "inconclusive" and "pairs" in m.reason and m.p_value is None


def test_power_statement_matches_what_the_test_does():
    """The stated detectable change is flagged about POWER of the time; pairs_for inverts
    detectable."""
    sd, n, level = 0.05, 12, 0.95
    smallest = detectable(sd, n, level, LIMIT)
    rng = np.random.default_rng(4)
    flagged = 0
    trials = 400
    for _ in range(trials):
        m = Paired(rng.normal(math.log(smallest), sd, n), LIMIT)
        judge_pairs([m], 0.05)  # one measure: level 95 %, as assumed
        flagged += m.verdict == "worse"
    assert 0.65 < flagged / trials < 0.95
    needed = pairs_for(smallest, sd, level, LIMIT)
    assert abs(needed - n) <= 1
    assert pairs_for(1.05, sd, level, math.log1p(0.06)) is None  # threshold beyond 5 %
    assert pairs_for(1.05, sd / 2, level, LIMIT) < pairs_for(1.05, sd, level, LIMIT)


def _results(slower: dict[str, float], rounds: int = 8, seed: int = 5) -> dict:
    """A results file as `ab` writes it: alternating samples with drift, B slower by
    `slower[key]` on every cell."""
    rng = np.random.default_rng(seed)
    cells = []
    for model, fmt in product(("m1", "m2", "m3"), ("f1", "f2")):
        pairs = []
        for r in range(rounds):
            pair = {"round": r + 1, "orders": ["ab"] * 10, "a": {}, "b": {}}
            for key in ("load_s", "dump_s"):
                a, b = _drifting_round(rng, 10, slower.get(key, 1.0))
                pair["a"][key], pair["b"][key] = list(a * 1e-3), list(b * 1e-3)
            peak = [50 * 2**20] * 10
            pair["a"]["load_peak_rss_bytes"] = pair["b"]["load_peak_rss_bytes"] = peak
            pair["a"]["file_bytes"] = [1000] * 10
            pair["b"]["file_bytes"] = [1000 if fmt == "f1" else 1200] * 10
            pairs.append(pair)
        cells.append({"cell_id": f"ab/{model}/small/{fmt}", "experiment": "ab", "model": model,
                      "size": "small", "format": fmt, "status": "ok", "pairs": pairs})
    cells.append({"cell_id": "ab/m4/small/f1", "experiment": "ab", "model": "m4",
                  "size": "small", "format": "f1", "status": "unsupported", "reason": "no",
                  "pairs": []})
    sides = {s: {"spec": s, "python": sys.executable, "versions": {"joblib": v}}
             for s, v in (("a", "1.5"), ("b", "1.6"))}
    return {"run": {"ab": {"sides": sides}}, "cells": cells}


def test_analysis_flags_the_slowed_measure_only():
    comp = analyse(_results({"load_s": 1.08}))
    worse = {(r.cell_id, r.key) for r in comp.flagged()}
    loads = {(f"ab/{m}/small/{f}", "load_s") for m in ("m1", "m2", "m3") for f in ("f1", "f2")}
    sizes = {(f"ab/{m}/small/f2", "file_bytes") for m in ("m1", "m2", "m3")}
    assert worse == loads | sizes  # file sizes: exact, any change
    assert all(r.verdict == "same" for r in comp.rows if r.key == "load_peak_rss_bytes")
    assert comp.failed == [("ab/m4/small/f1", "unsupported", "no")]
    assert {p.family for p in comp.power} == {"load_s", "dump_s"}
    assert comp.regressions(5.0) and not comp.regressions(50.0)


def test_a_pair_of_steps_is_judged_by_its_fastest_runs():
    """Steps hold a series each: step i of B is compared with step i of A through their
    fastest runs, so a spike inside a series and a drift between steps both cancel. Known answer:
    every B series is A's times 1.05 (one sample of each B series a 10x spike), the machine
    twice as slow in odd steps: every round's log ratio is log(1.05) exactly."""
    from persistbench.report.ab import _everything, _logs

    pairs = []
    for r in range(8):
        a, b = [], []
        for step in range(6):
            slow = 2.0 if step % 2 else 1.0
            series = [slow * 1e-4] * 5
            a.append(series)
            b.append([v * 1.05 * (10 if k == r % 5 else 1) for k, v in enumerate(series)])
        pairs.append({"round": r + 1, "a": {"load_s": a}, "b": {"load_s": b}})
    logs = _logs(pairs, "load_s", 0.0)
    assert logs == pytest.approx(np.full(8, math.log(1.05)))
    assert len(_everything(pairs, "a", "load_s")) == 8 * 6 * 5
    pairs[0]["b"]["load_s"][0] = []  # an empty series: that measure cannot be paired
    assert _logs(pairs, "load_s", 0.0) is None


def test_analysis_of_no_change_flags_only_exact_sizes():
    comp = analyse(_results({}))
    assert {r.key for r in comp.flagged()} == {"file_bytes"}


def test_output_names_sides_versions_and_power(capsys):
    from rich.console import Console

    from persistbench.report.ab_output import print_ab

    print_ab(analyse(_results({"load_s": 1.08})), console=Console(width=200))
    out = capsys.readouterr().out
    assert "joblib 1.5 -> 1.6" in out and "could detect" in out
    assert "load_s: x" in out and "5% needs" in out
    assert "worse" in out and "unsupported ab/m4/small/f1: no" in out


def test_requirements_pin_everything_the_user_did_not_name():
    reqs = pinned_requirements(["joblib==1.5.3"])
    assert reqs[0] == "joblib==1.5.3"
    assert not [r for r in reqs[1:] if r.startswith("joblib")]
    assert any(r.startswith("scikit-learn==") for r in reqs)
    assert any(r.startswith("psutil==") for r in reqs)
    with pytest.raises(UsageError, match="not a requirement"):
        pinned_requirements(["==1.0"])


def test_a_side_given_by_path_is_read_and_a_bad_path_refused(tmp_path):
    side = side_environment(sys.executable, rebuild=False)
    assert side["source"] == "given" and side["packages"]["scikit-learn"]
    with pytest.raises(UsageError, match="not a Python interpreter"):
        side_environment(str(tmp_path / "nowhere"), rebuild=False)


@pytest.mark.slow
def test_a_session_with_the_same_interpreter_on_both_sides(tmp_path):
    """About 40 s: two cells, six rounds of alternating samples, one failing format."""
    from persistbench.commands.main import main
    from persistbench.results.schema import read

    out = tmp_path / "ab.json"
    code = main(["ab", "--a", sys.executable, "--b", sys.executable, "--models",
                 "custom_code", "--formats", "pickle,cloudpickle", "--rounds", "6",
                 "--samples", "5", "--output", str(out), "--no-calibrate",
                 "--fail-on-regression"])
    data = read(out)
    cells = {c["format"]: c for c in data["cells"]}
    assert cells["pickle"]["status"] == "unsupported"  # a lambda: recorded, the run goes on
    good = cells["cloudpickle"]
    assert good["status"] == "ok" and len(good["pairs"]) == 6
    assert all(len(p["orders"]) == 5 and len(p["a"]["load_s"]) == 5 for p in good["pairs"])
    assert {o for p in good["pairs"] for o in p["orders"]} == {"ab", "ba"}
    assert data["run"]["ab"]["sides"]["a"]["versions"]["scikit-learn"]
    assert code in (0, 1)  # the same interpreter: a flag here would be a false alarm
    assert not analyse(data).flagged()


def test_a_warm_time_is_judged_by_its_cpu_time_when_recorded():
    """Known answer: B's loads run 1.05x A's in CPU time every step, and in wall time B's
    steps also waited for the CPU a random 0-3x as long as they ran (a busy machine, one
    side's step unlucky): by wall time the rounds scatter and the change hides; by CPU time
    every round reads log(1.05) and it is flagged. The cold load stays judged by its wall
    time."""
    rng = np.random.default_rng(7)
    data = _results({})
    for cell in data["cells"]:
        for pair in cell["pairs"]:
            for side, factor in (("a", 1.0), ("b", 1.05)):
                cpu = [[1e-3 * factor] * 5 for _ in range(4)]
                pair[side]["load_cpu_s"] = cpu
                pair[side]["load_s"] = [[v * (1 + rng.uniform(0, 3)) for v in series]
                                        for series in cpu]
    comp = analyse(data)
    loads = [r for r in comp.rows if r.key == "load_s"]
    assert loads and all(r.verdict == "worse" and "CPU time" in r.note for r in loads)
    assert all(r.ratio == pytest.approx(1.05) for r in loads)
    for pair in data["cells"][0]["pairs"]:  # one pair without the twin: wall time judged
        del pair["b"]["load_cpu_s"]
    row = next(r for r in analyse(data).rows if r.key == "load_s"
               and r.cell_id == data["cells"][0]["cell_id"])
    assert "CPU time" not in row.note
