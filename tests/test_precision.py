"""Precision on demand: the median's 95 % interval on known samples, and the stopping rule
on synthetic noise (a stable measure stops early, a noisy one runs to its budget)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from persistbench.measure import sampling
from persistbench.report.values import measured
from persistbench.results.precision import median_interval, parse_precision, relative_halfwidth
from persistbench.results.protocols import WARM_REPEATED

# The stopping rule alone: warm-ups by wall-clock time would draw from the synthetic timer too.
SYNTHETIC = replace(WARM_REPEATED, warmup_s=0.0)


def test_the_interval_of_the_median_is_the_binomial_order_statistics():
    assert median_interval([1, 2, 3, 4, 5]) is None  # 5 samples cannot reach 95 %
    assert median_interval([6, 1, 5, 2, 4, 3]) == (1, 6)
    assert median_interval(list(range(1, 101))) == (40, 61)  # the textbook ranks for n=100
    assert relative_halfwidth([10.0] * 8) == 0.0


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.1", 0.1), (" 2.5% ", 0.025)])
def test_precision_parses_percent_or_fraction(text, value):
    assert parse_precision(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "100%", "fast", "-5%"])
def test_a_bad_precision_is_refused_with_what_to_give(text):
    with pytest.raises(ValueError, match="precision"):
        parse_precision(text)


def synthetic(monkeypatch, sigma: float, seed: int = 0) -> list[float]:
    """Replace the timer by log-normal durations around 1 ms; return the list of draws."""
    rng = np.random.default_rng(seed)
    drawn: list[float] = []

    def fake_timed(run):
        value = run()
        drawn.append(float(1e-3 * rng.lognormal(0.0, sigma)))
        return drawn[-1], value

    monkeypatch.setattr(sampling, "timed", fake_timed)
    return drawn


def test_a_stable_measure_stops_as_soon_as_its_interval_is_tight(monkeypatch):
    synthetic(monkeypatch, sigma=0.01)
    series = sampling.sample(SYNTHETIC, lambda: None, 5, budget_s=10.0, precision=0.05)
    assert len(series.samples) == 6 and series.short_reason is None
    assert relative_halfwidth(series.samples) <= 0.05


def test_a_noisy_measure_samples_until_its_budget(monkeypatch):
    synthetic(monkeypatch, sigma=1.0)
    series = sampling.sample(SYNTHETIC, lambda: None, 5, budget_s=0.05, precision=0.01)
    assert 6 < len(series.samples) < sampling.MAX_SAMPLES
    assert sum(series.samples) + sum(series.warmups) > 0.05
    assert "95 % interval within ±1%" in series.short_reason


def test_a_moderately_noisy_measure_stops_between(monkeypatch):
    synthetic(monkeypatch, sigma=0.1)
    series = sampling.sample(SYNTHETIC, lambda: None, 5, budget_s=10.0, precision=0.05)
    assert 6 < len(series.samples) < sampling.MAX_SAMPLES and series.short_reason is None
    assert relative_halfwidth(series.samples) <= 0.05


def test_the_sample_cap_ends_a_sub_microsecond_measure(monkeypatch):
    synthetic(monkeypatch, sigma=1.0)
    series = sampling.sample(SYNTHETIC, lambda: None, 5, budget_s=1e9, precision=0.001)
    assert len(series.samples) == sampling.MAX_SAMPLES


def test_headline_figures_print_their_interval_and_count():
    samples = [1e-3, 1.01e-3, 0.99e-3, 1e-3, 1.02e-3, 0.98e-3]
    shown = measured({"min": 0.98e-3, "median": 1e-3, "max": 1.02e-3, "n": 6,
                      "samples": samples})
    assert shown.text() == "1.00 ms ±2\u00a0% (n=6)"
    few = measured({"min": 1e-3, "median": 1e-3, "max": 1e-3, "n": 2, "samples": [1e-3] * 2})
    assert few.text().endswith("(n=2)") and "±" not in few.text()
    assert measured(None).text() == "-"
