"""Plan -> cells -> isolated child processes -> results file, one cell at a time.

Every child is forked from a forkserver that has preloaded the heavy libraries
(`persistbench.schedule.preload`), so a cell pays a fork, not an interpreter start-up. A cell that
raises, hangs or dies becomes a recorded result; the run goes on. Each finished cell is appended
atomically, so a killed run loses at most the cell in flight and `--resume` picks up there.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from persistbench import __version__
from persistbench.experiments import Cell, experiment
from persistbench.measure.methods import active, methods
from persistbench.measure.noise import noise_snapshot, noise_summary
from persistbench.measure.phases import PEAK_METHOD, allocator
from persistbench.results.passes import add_pass, passes_done, pool_workers
from persistbench.results.schema import ResultsFile, now, record_failure
from persistbench.schedule.batches import StartBatch
from persistbench.schedule.budget import SamplingBudget
from persistbench.schedule.children import (
    context,
    forkserver_ready,
    fresh_forkserver,
    run_child,
)

TRAIN_TIMEOUT_S = 3600.0
PENDING_STARTS = "not measured: the run ended before this cell's batch of server starts"


@dataclass
class RunOptions:
    output: Path
    resume: bool = False
    timeout_s: float = 600.0
    profile: str | None = None
    seed: int = 0
    argv: list[str] = field(default_factory=list)
    calibrate: bool = True
    workdir: Path | None = None
    runs: int = 1  # independent passes over every cell, interleaved
    sampling_s: float | None = None  # seconds of samples the whole run shares (`budget`)


def _train(cell: Cell, scratch: Path, timeout_s: float) -> dict:
    return train_model(cell.model, cell.size, int(cell.options.get("seed", 0)), scratch,
                       timeout_s)


def train_model(model: str, size: str, seed: int, scratch: Path,
                timeout_s: float = TRAIN_TIMEOUT_S) -> dict:
    """Fit a model into the cache in a child (never in a process that measures)."""
    from persistbench.schedule.worker import already_cached, train

    return already_cached(model, size, seed) or run_child(
        train, (model, size, seed), Path(scratch) / "train.json", timeout_s)


def _training_failed(cell: Cell, trained: dict) -> dict:
    return {**cell.header(), "status": "error",
            "reason": f"training failed: {trained.get('reason')}"}


def with_budget(cell: Cell, budget: SamplingBudget | None) -> Cell:
    """The cell with its share of the run's sampling budget, per timed phase (`budget_s`)."""
    phases = getattr(experiment(cell.experiment), "TIMED_PHASES", 0)
    if budget is None or not phases:
        return cell
    return replace(cell, options={**cell.options, "budget_s": budget.share() / phases})


def sampling_used(record: dict) -> float:
    return sum(step.get("sampling_s", 0.0) for step in record.get("overhead", []))


def run_cell(cell: Cell, workdir: Path, timeout_s: float) -> dict:
    """All steps of one cell, each in a fresh child; measures of earlier steps are kept."""
    from persistbench.schedule.worker import run_step

    started = time.monotonic()
    record: dict = {**cell.header(), "status": "ok"}
    measures: dict = {}
    overheads, warnings_seen = [], []
    module = experiment(cell.experiment)
    split = set(getattr(module, "SPLIT_STEPS", ()))
    workers = int(cell.options.get("workers", 1))
    for index, step in enumerate(module.STEPS):
        count = workers if step.__name__ in split else 1
        pooled = []
        for worker in range(count):
            remaining = timeout_s - (time.monotonic() - started)
            step_started = time.monotonic()
            result_path = workdir / f"step{index}-{worker}.json"
            outcome = run_child(run_step, (cell, index, str(workdir), measures, started,
                                           (worker, count)),
                                result_path, max(remaining, 1.0))
            if "entered_monotonic" in outcome:
                overheads.append({
                    "step": step.__name__,
                    "spawn_s": outcome["entered_monotonic"] - step_started,
                    "to_first_measurement_s": (outcome["first_measurement_monotonic"] or
                                               outcome["entered_monotonic"]) - step_started,
                    "sampling_s": outcome.get("sampling_s", 0.0),
                })
            warnings_seen += outcome.get("warnings", [])
            if outcome["status"] != "ok":
                break
            pooled.append(outcome["measures"])
        if pooled:
            taken = pool_workers(pooled) if count > 1 else pooled[0]
            recorded = {**measures.get("protocols", {}), **taken.get("protocols", {})}
            measures.update(taken)
            if recorded:  # each step names the protocols of its own measures
                measures["protocols"] = recorded
        if outcome["status"] != "ok":
            record_failure(record, outcome, step.__name__)
            break
    if split and workers > 1:
        record["workers"] = workers
    record.update(measures)
    record["overhead"] = overheads
    if warnings_seen:
        record["warnings"] = sorted(set(warnings_seen))
    record["elapsed_s"] = time.monotonic() - started
    return record


def measure_cell(cell: Cell, timeout_s: float = 600.0, base: Path | None = None) -> dict:
    """One cell on its own: trained if needed, measured in fresh children, no results file.

    The entry point of fronts that keep their own records (asv, pytest-benchmark): the same
    steps and the same cell record as `run`, without a run around them.
    """
    scratch = make_scratch(base)
    try:
        if cell.needs_model:
            trained = _train(cell, scratch, TRAIN_TIMEOUT_S)
            if trained["status"] != "ok":
                return _training_failed(cell, trained)
        workdir = scratch / "cell"
        workdir.mkdir()
        record = run_cell(cell, workdir, timeout_s)
        batch = StartBatch(scratch / "batch")
        return batch.run(1)[0] if batch.add(cell, record, workdir, None) else record
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


SCRATCH_PREFIX = ".persistbench-"


def make_scratch(base: Path | None) -> Path:
    """A work folder named after this process, so a later run can tell it was abandoned."""
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))


def sweep_abandoned_scratch(base: Path) -> None:
    """Remove work folders of killed runs: they can hold big dumps and crafted payloads."""
    import psutil

    for folder in base.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _open_results(options: RunOptions) -> ResultsFile:
    from persistbench.measure.machine import calibrate, fingerprint

    run_info = {"started": now(), "finished": None, "argv": options.argv,
                "harness_version": __version__, "profile": options.profile,
                "peak_memory_method": PEAK_METHOD, "python_executable": sys.executable,
                "start_method": context().get_start_method(), "models": {},
                "allocator": allocator(), "noise": {"start": noise_snapshot()},
                "methods": methods(active(), allocator()["name"])}
    if options.resume and options.output.exists():
        return ResultsFile.resume(options.output, run_info)
    # The forkserver's imports (seconds) run while the fingerprint asks py-cpuinfo's child
    # (about a second); neither is timed. The calibration is, so it waits for the imports.
    machine = fingerprint(options.output.parent)
    forkserver_ready()
    machine["calibration"] = (calibrate(options.output.parent) if options.calibrate
                              else None)
    return ResultsFile.create(options.output, machine, run_info)


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    transient=False)


def _pending(cells: list[Cell], results: ResultsFile, runs: int, seed: int = 0
             ) -> list[tuple[int, Cell]]:
    """(pass, cell) still to measure: pass 1 over every cell, then pass 2, …

    Interleaving passes spreads slow drift of a shared machine over every cell alike. With
    several passes each visits the cells in an order of its own (seeded, so a resumed run
    keeps it): what ran just before a cell then differs from pass to pass and shows as
    spread between its passes, instead of repeating in every pass of one run and reading
    as a difference between two runs (with one order for all passes, one run had a cell's
    server imports about 1.5x slower than another run in all three of its passes: the
    first cell after the previous model's). An unsupported cell is not measured again: its
    answer does not vary.
    """
    todo = []
    for pass_index in range(1, runs + 1):
        order = cells if runs == 1 else [
            cells[i] for i in np.random.default_rng([seed, pass_index]).permutation(len(cells))]
        for cell in order:
            record = results.record(cell.cell_id)
            if passes_done(record) >= pass_index or (
                    record is not None and record["status"] == "unsupported"):
                continue
            todo.append((pass_index, cell))
    return todo


def run(cells: list[Cell], options: RunOptions) -> ResultsFile:
    """Measure every cell not already in the results file (`runs` passes); return the file."""
    results = _open_results(options)
    results.data["run"]["runs"] = max(options.runs, results.data["run"].get("runs", 1))
    todo = _pending(cells, results, options.runs, options.seed)
    base = options.workdir or options.output.parent
    base.mkdir(parents=True, exist_ok=True)
    sweep_abandoned_scratch(base)
    scratch = make_scratch(base)
    trained: dict[tuple[str, str], dict] = {}
    batch = StartBatch(scratch / "batch")
    budget = SamplingBudget(options.sampling_s, len(todo)) if options.sampling_s else None

    def run_batch(progress, task) -> None:
        if batch.waiting:
            progress.update(task, description=f"server starts of {len(batch.waiting)} cells")
            results.put_many(batch.run(options.runs))

    try:
        with _progress() as progress:
            task = progress.add_task("cells", total=len(todo))
            last_of_pass = {pass_index: i for i, (pass_index, _) in enumerate(todo)}
            for i, (pass_index, cell) in enumerate(todo):
                if i and pass_index != todo[i - 1][0]:
                    run_batch(progress, task)
                    fresh_forkserver()
                key = (cell.model, cell.size)
                if cell.needs_model and key not in trained:
                    progress.update(task, description=f"model {cell.model}/{cell.size}")
                    trained[key] = _train(cell, scratch, TRAIN_TIMEOUT_S)
                    results.data["run"]["models"][f"{cell.model}/{cell.size}"] = trained[key]
                label = f"pass {pass_index}/{options.runs} " if options.runs > 1 else ""
                progress.update(task, description=label + cell.cell_id)
                if cell.needs_model and trained[key]["status"] != "ok":
                    record = _training_failed(cell, trained[key])
                else:
                    workdir = scratch / "cell"
                    workdir.mkdir()
                    try:
                        record = run_cell(with_budget(cell, budget), workdir,
                                          options.timeout_s)
                        waiting = batch.add(cell, record, workdir,
                                            results.record(cell.cell_id))
                    finally:
                        shutil.rmtree(workdir, ignore_errors=True)
                    if waiting:
                        record = dict(record, start_reason=PENDING_STARTS)
                if budget is not None:
                    budget.spend(sampling_used(record))
                if options.runs > 1:
                    record = add_pass(results.record(cell.cell_id), record)
                results.put(record)
                progress.advance(task)
                if batch.full():
                    run_batch(progress, task)
                if i == last_of_pass[pass_index]:
                    run_batch(progress, task)
                if options.runs > 1 and i == last_of_pass[pass_index]:
                    results.data["run"].setdefault("passes_finished", []).append(now())
    except KeyboardInterrupt:
        results.finish("interrupted")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        noise = results.data["run"].setdefault("noise", {})
        noise.update(noise_summary(noise.get("start"), noise_snapshot()))
        results.flush()
    results.finish()
    return results
