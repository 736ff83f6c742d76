"""Humanised numbers never show a rounding carry such as '1e+03 kB'."""

from __future__ import annotations

import pytest

from persistbench.results.units import human_bytes, human_seconds


@pytest.mark.parametrize("value, text", [
    (0, "0 B"), (999, "999 B"), (999.6, "1.00 kB"), (999_999, "1.00 MB"),
    (1_234_567, "1.23 MB"), (-2e6, "-2.00 MB"), (3.2e13, "32.0 TB"), (None, "-"),
])
def test_bytes(value, text):
    assert human_bytes(value) == text


@pytest.mark.parametrize("value, text", [
    (0.9999, "1.00 s"), (0.0009999, "1.00 ms"), (0.000123, "123 μs"), (0.0123, "12.3 ms"),
    (90, "1.5 min"), (None, "-"),
])
def test_seconds(value, text):
    assert human_seconds(value) == text
