"""Experiments: each module defines its cells and the steps that measure one cell.

An experiment module provides
  NAME: str
  DESCRIPTION: str
  STEPS: tuple of step functions; each runs in its own fresh child process, in order, and
         gets a `StepContext` (the cell, a work directory shared by the steps, the measures
         of the steps before it); it returns measures to merge into the cell.
  plan(models, sizes, formats, options) -> list[Cell]
and may provide
  SPLIT_STEPS: names of steps whose samples are spread over `workers` fresh processes
         (cell option, default 1), each with its own warm-up; their measures are pooled.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from persistbench.results.schema import cell_id

EXPERIMENT_MODULES = ("roundtrip", "compat", "sharing", "inference", "footprint", "security",
                      "robustness", "portability")


@dataclass(frozen=True)
class Cell:
    experiment: str
    model: str
    size: str
    format: str
    variant: str = ""
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    needs_model: bool = True

    @property
    def cell_id(self) -> str:
        return cell_id(self.experiment, self.model, self.size, self.format, self.variant)

    def header(self) -> dict:
        head = {"cell_id": self.cell_id, "experiment": self.experiment, "model": self.model,
                "size": self.size, "format": self.format}
        if self.variant:
            head["variant"] = self.variant
        return head


@dataclass
class StepContext:
    """What a step sees inside its child process."""

    cell: Cell
    workdir: Path
    previous: dict[str, Any]
    cell_started: float  # time.monotonic() in the parent when the cell began
    first_measurement: float | None = None
    worker: int = 0  # which of the step's `workers` processes this is
    workers: int = 1
    # The scheduler's `run_child(target, args, result_path, timeout_s) -> outcome`, for a step
    # that must run something in a further child (a load that may crash or hang); given by
    # the worker, so an experiment never imports the scheduler.
    run_child: Callable[..., dict] | None = None

    def share(self, count: int) -> int:
        """This worker's share of `count` samples (at least one each)."""
        return max(1, -(-count // self.workers))

    def load_model(self) -> tuple[Any, Any]:
        """The cached fitted model: trained in another process, read here, not measured."""
        from persistbench.sources.models import load_cached
        from persistbench.sources.resolve import resolve_spec

        spec = resolve_spec(self.cell.model)
        return load_cached(spec, self.cell.size, int(self.cell.options.get("seed", 0)))

    def start_measuring(self) -> None:
        if self.first_measurement is None:
            self.first_measurement = time.monotonic()


def experiment(name: str) -> ModuleType:
    if name not in EXPERIMENT_MODULES:
        from persistbench.sources.models import UsageError

        raise UsageError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENT_MODULES)}")
    return importlib.import_module(f"persistbench.experiments.{name}")
