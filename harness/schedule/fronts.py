"""What the benchmark fronts (asv, pytest-benchmark) call, so neither measures on its own.

A front times the format registry's own `dump` / `load` and the models' own predictions
with its own timer; that is what asv and pytest-benchmark are for. Everything else comes from
the harness: fitted models from its cache (trained in a child process, never pickled by the
front), and the per-phase peak RSS, file size and shared PSS of a cell from the runner, which
measures them in fresh child processes exactly as `persistbench run` does.
"""

from __future__ import annotations

import atexit
import hashlib
import inspect
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from persistbench.experiments import experiment
from persistbench.experiments.quantities import (
    Dumps,
    NotCold,
    Quantity,
    cold_load_quantity,
    load_quantity,
)
from persistbench.experiments.roundtrip import DEFAULT_BUDGET_S
from persistbench.measure.sampling import Series
from persistbench.schedule.profiles import PROFILES, from_env
from persistbench.sources.formats import FORMATS, Unsupported, describe_exception
from persistbench.sources.models import MODELS, cache_path, load_cached
from persistbench.sources.resolve import resolve_spec

SEED = 0
BATCH_SIZES = (1, 100, 10_000)
# asv keeps a history per benchmark name and parameter set, so its grid must not change from
# one run to the next: it is fixed here, not read from PERSISTBENCH_PROFILE.
ASV_PROFILE = "quick"
CELL_TIMEOUT_S = 600.0
# Cells whose status means "this format cannot do this model": a front skips them. Any other
# failed status (timeout, crashed) is a fault of the run and fails the benchmark instead.
FORMAT_FAILURES = ("unsupported", "error")


class NotMeasurable(Exception):
    """This model/format combination has no such measure; the message says why."""

    def __init__(self, status: str, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status


@dataclass(frozen=True)
class Grid:
    """The parameters of a front's suites for one profile: plain strings, repr-stable."""

    profile: str
    models: list[str]
    sizes: list[str]
    formats: list[str]
    repeat: int
    precision: float | None = None  # sample to this 95 % interval, as `run` does
    budget_s: float = DEFAULT_BUDGET_S  # per quantity: stop there, precise or not


    def cells(self) -> list[tuple[str, str, str]]:
        return [(m, s, f) for m in self.models for s in self.sizes for f in self.formats]


def grid(profile: str | None = None) -> Grid:
    """The suites' grid; without a name, the profile comes from PERSISTBENCH_PROFILE."""
    name = profile or from_env()
    prof = PROFILES[name]
    return Grid(profile=name, models=list(MODELS), sizes=list(prof["sizes"]),
                formats=list(FORMATS), repeat=int(prof["repeat"]),
                precision=prof.get("precision"),
                budget_s=float(prof.get("budget_s", DEFAULT_BUDGET_S)))


def definitions_version(grid: Grid, suite_source: str) -> str:
    """asv's `version` of a suite: a new series whenever what is measured changes.

    asv's default version hashes the benchmark's own code only, so a change to how a zoo
    model is built or how a format dumps would continue the old series with incomparable
    numbers. This hashes the model and format definitions, the quantities, their protocols
    and sampler, this module, the grid and the suite's source together.
    """
    from persistbench.experiments import quantities
    from persistbench.measure import sampling
    from persistbench.results import protocols
    from persistbench.sources import formats, models

    digest = hashlib.sha256()
    for part in (inspect.getsource(models), inspect.getsource(formats),
                 inspect.getsource(quantities), inspect.getsource(sampling),
                 inspect.getsource(protocols),
                 inspect.getsource(inspect.getmodule(definitions_version)), repr(grid),
                 suite_source):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


@cache
def scratch_dir() -> Path:
    """One private directory per process for the files a front dumps and loads.

    Benchmark processes may end with `os._exit` (asv's forkserver children do), which skips
    `atexit`; so each new directory also clears those of processes that no longer exist.
    """
    import psutil

    base = Path(tempfile.gettempdir()) / f"persistbench-front-{os.getuid()}"
    base.mkdir(exist_ok=True)
    for old in base.glob("pid-*"):
        if not psutil.pid_exists(int(old.name.removeprefix("pid-"))):
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"pid-{os.getpid()}"
    path.mkdir(exist_ok=True)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@cache
def fitted(model: str, size: str) -> tuple[Any, Any]:
    """(estimator, X_eval) from the harness's model cache; trained in a child when missing."""
    spec = resolve_spec(model)
    if not cache_path(spec, size, SEED).exists():
        from persistbench.schedule.runner import train_model

        trained = train_model(model, size, SEED, scratch_dir())
        if trained["status"] != "ok":
            raise RuntimeError(f"training {model}/{size} failed: {trained.get('reason')}")
    return load_cached(spec, size, SEED)


@cache
def dumped(model: str, size: str, fmt: str) -> tuple[Path, dict]:
    """A file of the model in `fmt`, dumped once per process and checked to load back.

    Raises NotMeasurable with the library's message when the format refuses the model or
    cannot load what it wrote. The file is the harness's own, so loading it here is safe.
    """
    est, X_eval = fitted(model, size)
    form = FORMATS[fmt]
    path = scratch_dir() / f"{model}-{size}{form.suffix}"
    try:
        form.dump(est, path, X_eval)
    except Unsupported as exc:
        raise NotMeasurable("unsupported", str(exc)) from exc
    try:
        prepared = form.prepare_load(path)
        form.load(path, prepared)
    except Exception as exc:
        raise NotMeasurable("error", f"load: {describe_exception(exc)}") from exc
    return path, prepared


QUANTITIES = ("dump_s", "load_s", "load_cold_s")

def quantity(key: str, model: str, size: str, fmt: str) -> Quantity:
    """A cell's timed quantity bound to its protocol: what `persistbench run` times under
    the same name (NotMeasurable when the format cannot do the model)."""
    path, prepared = dumped(model, size, fmt)
    form = FORMATS[fmt]
    if key == "load_s":
        return load_quantity(form, path, prepared)
    if key == "load_cold_s":
        return cold_load_quantity(form, path, prepared, [])
    if key == "dump_s":
        est, X_eval = fitted(model, size)
        return Dumps(form, est, X_eval, scratch_dir()).quantity()
    raise KeyError(f"{key!r} is not one of {QUANTITIES}")


def sampled(key: str, model: str, size: str, fmt: str, grid: Grid) -> Series:
    """A quantity's samples under its protocol, as `persistbench run` takes them with the
    profile's options: `grid.repeat` samples, or with a precision until the median's 95 %
    interval is that tight, within `grid.budget_s` (the warm-ups kept apart)."""
    try:
        return quantity(key, model, size, fmt).sample(grid.repeat, grid.budget_s,
                                                      grid.precision)
    except NotCold as exc:
        raise NotMeasurable("unsupported", str(exc)) from exc


_fresh = itertools.count()
_handed_out: list[Path] = []


def fresh_path(fmt: str) -> Path:
    """A path no file has been written to yet: every timed dump creates its file.

    The file handed out before is removed, so repeated dumps of a large model keep one file
    on disk, not one per round.
    """
    while _handed_out:
        _handed_out.pop().unlink(missing_ok=True)
    path = scratch_dir() / f"timed-{next(_fresh)}{FORMATS[fmt].suffix}"
    _handed_out.append(path)
    return path


def rows(X: Any, n: int) -> Any:
    """The first n evaluation rows, cycling through them when n exceeds what there is."""
    index = np.arange(n) % len(X)
    if isinstance(X, list):
        return [X[i] for i in index]
    return np.take(X, index, axis=0)


def single_thread() -> None:
    """Predictions are compared at one thread: onnxruntime sessions are opened with one."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def records(name: str, models: list[str], sizes: list[str], formats: list[str],
            repeat: int) -> dict[tuple[str, str, str], dict]:
    """Cell records of an experiment, measured one cell at a time by the runner."""
    from persistbench.schedule.runner import measure_cell

    cells = experiment(name).plan(models, sizes, formats, {"repeat": repeat, "seed": SEED})
    return {(c.model, c.size, c.format): measure_cell(c, CELL_TIMEOUT_S) for c in cells}


def check_record(record: dict | None) -> dict:
    """The record of a measured cell, or NotMeasurable for a format that could not do it."""
    if record is None:
        raise NotMeasurable("unsupported", "the experiment has no cell for this combination")
    if record["status"] == "ok":
        return record
    if record["status"] in FORMAT_FAILURES:
        raise NotMeasurable(record["status"], record.get("reason", ""))
    raise RuntimeError(f"{record['cell_id']} {record['status']}: {record.get('reason')}")
