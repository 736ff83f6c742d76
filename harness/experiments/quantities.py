"""The round trip's timed quantities, each bound to its protocol: the one definition that
`persistbench run`, the asv suite and the pytest-benchmark suite all time.

A quantity is what is timed (`run`), what its protocol runs before each sample, outside the
timing (`between`), and the protocol's name. The harness samples it with
`persistbench.measure.sampling`; asv stores the same samples' median under the same name;
pytest-benchmark times `run` with its own timer, `between` as its setup and the protocol's
warm-ups as its warm-up rounds. So `load_s` means the same on every front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persistbench.measure.phases import evict_verified
from persistbench.measure.sampling import Series, sample
from persistbench.results.protocols import COLD_PAGE_CACHE, WARM_REPEATED, Protocol
from persistbench.sources.formats import Format


class NotCold(Exception):
    """Eviction did not take the file out of the page cache here (tmpfs, some overlays)."""


@dataclass
class Quantity:
    key: str  # the results key every front stores it under
    protocol: Protocol
    run: Callable[[], Any]
    between: Callable[[], Any] | None = None

    def sample(self, repeat: int, budget_s: float, precision: float | None = None,
               after: Callable[[Any], Any] | None = None) -> Series:
        return sample(self.protocol, self.run, repeat, budget_s, between=self.between,
                      after=after, precision=precision)


class Dumps:
    """Repeated dumps, each to a new file; the one before is removed first, outside the
    timing (removing a big file takes time that is not the format's)."""

    def __init__(self, fmt: Format, est: Any, X: Any, directory: Path):
        self.fmt, self.est, self.X, self.directory = fmt, est, X, Path(directory)
        self.count = 0
        self.path: Path | None = None
        self.info: dict = {}

    def next_file(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.count += 1
        self.path = self.directory / f"dump{self.count}{self.fmt.suffix}"

    def dump(self) -> None:
        self.info.update(self.fmt.dump(self.est, self.path, self.X) or {})

    def quantity(self) -> Quantity:
        return Quantity("dump_s", WARM_REPEATED, self.dump, self.next_file)


def load_quantity(fmt: Format, path: Path, prepared: dict) -> Quantity:
    return Quantity("load_s", WARM_REPEATED, lambda: fmt.load(path, prepared))


def cold_load_quantity(fmt: Format, path: Path, prepared: dict,
                       fractions: list[float | None]) -> Quantity:
    """A load after eviction, checked by mincore; the fraction still resident of each
    sample goes to `fractions`, and a file that stayed resident raises NotCold."""
    def evict() -> None:
        fraction, why_not = evict_verified(path)
        fractions.append(fraction)
        if why_not:
            raise NotCold(why_not)

    return Quantity("load_cold_s", COLD_PAGE_CACHE, lambda: fmt.load(path, prepared), evict)
