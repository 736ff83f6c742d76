"""A run's time budget for timing samples, shared by its cells as they come.

A profile gives the whole run so many seconds of samples (`sampling_s`); each cell may use
what is left divided by the cells still to measure, split evenly among its timed phases
(the experiment's `TIMED_PHASES`). A phase stops as soon as its median's interval is as
tight as asked, so a stable cell (a 20 µs load reaches ±10 % in a few milliseconds) leaves
most of its share to the cells after it, and a noisy one (a forest's load interrupted by
collections) gets the time. What a cell used is what its children report
(`sampling.spent_in_process`), warm-ups and what runs between samples included.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SHARE = 0.05  # of the even share: a cell late in a run overspent still gets a few samples


@dataclass
class SamplingBudget:
    total_s: float
    cells: int
    used_s: float = 0.0
    done: int = 0

    def share(self) -> float:
        """Seconds of samples the next cell may spend."""
        left = max(self.total_s - self.used_s, 0.0)
        even = self.total_s / max(self.cells, 1)
        return max(left / max(self.cells - self.done, 1), MIN_SHARE * even)

    def spend(self, seconds: float) -> None:
        self.used_s += seconds
        self.done += 1
