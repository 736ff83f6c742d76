"""A run's shared sampling budget: what each cell may spend, and that what runs between
samples counts against a budget (an eviction can cost more than the timed load)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from persistbench.measure import sampling
from persistbench.results.protocols import WARM_REPEATED
from persistbench.schedule.budget import MIN_SHARE, SamplingBudget
from persistbench.schedule.planning import run_sampling_s


def test_a_cell_that_stops_early_leaves_its_share_to_the_cells_after_it():
    budget = SamplingBudget(total_s=10.0, cells=4)
    assert budget.share() == pytest.approx(2.5)
    budget.spend(0.5)  # a stable cell
    assert budget.share() == pytest.approx(9.5 / 3)
    budget.spend(9.5)  # a noisy one took the rest
    assert budget.share() == pytest.approx(MIN_SHARE * 2.5)  # still a few samples


def test_the_shared_budget_applies_only_when_the_options_ask_for_nothing_of_their_own():
    assert run_sampling_s("default") == pytest.approx(90.0)
    assert run_sampling_s("quick") is None
    assert run_sampling_s("default", repeat=5) is None
    assert run_sampling_s("default", precision=0.05) is None
    assert run_sampling_s("default", budget_s=2.0) is None


def test_what_runs_between_samples_counts_against_the_budget():
    protocol = replace(WARM_REPEATED, warmups=0, warmup_s=0.0)
    before = sampling.spent_in_process()
    series = sampling.sample(protocol, lambda: None, repeat=1000, budget_s=0.05,
                             between=lambda: time.sleep(0.01))
    assert 3 <= len(series.samples) <= 10  # the empty runs alone would take 1000 samples
    assert "time budget was spent" in series.short_reason
    assert sampling.spent_in_process() - before >= 0.05


def test_peak_samples_stop_at_their_budget_after_one():
    slow = sampling.peak_samples(lambda: time.sleep(0.02), 3, budget_s=0.01)
    assert len(slow) == 1
    assert len(sampling.peak_samples(lambda: None, 3, budget_s=60.0)) == 3
