"""Measures taken for many cells at once, after their own steps: the round trip's server
starts, which share one new interpreter per start among every cell whose import list has
the same beginning (`persistbench.experiments.starts`).

A cell's record is written as soon as its steps end (a killed run keeps it), then written
again with the batch's measures once the batch has run: at the end of each pass, or sooner
when the files kept for it pass `KEEP_BYTES`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from persistbench.experiments import Cell, experiment
from persistbench.results.passes import add_pass
from persistbench.results.vocabulary import START_REPEATS

KEEP_BYTES = 2 * 2**30  # files held for the batch before it runs early
BATCH_TIMEOUT_S = 120.0  # plus a per-cell allowance (`starts.LEAF_OVERHEAD_S`)


@dataclass
class Waiting:
    cell: Cell
    record: dict
    prior: dict | None  # the record before this pass (several passes: merged again)
    entry: dict


@dataclass
class StartBatch:
    folder: Path
    waiting: list[Waiting] = field(default_factory=list)

    def add(self, cell: Cell, record: dict, workdir: Path, prior: dict | None) -> bool:
        """Keep what the cell's batch needs; False when the cell takes no batch measure."""
        hook = getattr(experiment(cell.experiment), "start_entry", None)
        keep = self.folder / "files"
        keep.mkdir(parents=True, exist_ok=True)
        entry = hook(cell, workdir, record, keep) if hook else None
        if entry is None:
            return False
        self.waiting.append(Waiting(cell, record, prior, entry))
        return True

    def full(self) -> bool:
        return sum(w.entry["bytes"] for w in self.waiting) > KEEP_BYTES

    def run(self, passes: int) -> list[dict]:
        """Measure every waiting cell's batch; return their completed records."""
        done = []
        by_experiment: dict[str, list[Waiting]] = {}
        for waiting in self.waiting:
            by_experiment.setdefault(waiting.cell.experiment, []).append(waiting)
        try:
            for name, group in by_experiment.items():
                repeats = max(int(w.cell.options.get("starts", START_REPEATS)) for w in group)
                found = experiment(name).start_batch([w.entry for w in group],
                                                     self.folder / "run", repeats,
                                                     BATCH_TIMEOUT_S)
                for waiting in group:
                    done.append(self._complete(waiting, found[waiting.cell.cell_id], passes))
        finally:
            self.waiting = []
            shutil.rmtree(self.folder, ignore_errors=True)
        return done

    @staticmethod
    def _complete(waiting: Waiting, measures: dict, passes: int) -> dict:
        record = dict(waiting.record)
        if "error" in measures:
            record["status"] = "error"
            record["reason"] = f"start: {measures['error']}"
        else:
            recorded = {**record.get("protocols", {}), **measures.pop("protocols", {})}
            record.update(measures)
            record["protocols"] = recorded
        return add_pass(waiting.prior, record) if passes > 1 else record
