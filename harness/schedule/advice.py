"""The advise flow, shared by `persistbench advise FILE` and `persistbench.advise(estimator, X)`.

A model file is audited and refused unless it is clean or explicitly trusted (nothing is
loaded); an estimator handed over in Python is written by the harness itself, so there is
nothing to audit. Either way the model is registered as a model source, a child process loads
it and builds its evaluation rows into the model cache (so a model that needs rows is told so
before anything is measured), then the usual runner measures every format on it into the
usual results file.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from persistbench.experiments import Cell, experiment
from persistbench.sources.eval_rows import check_readable
from persistbench.sources.model_file import ModelFile, Refused, admit, register
from persistbench.sources.models import CUSTOM_SIZE, UsageError

BASIC_EXPERIMENTS = ("roundtrip",)
FULL_EXPERIMENTS = ("roundtrip", "sharing", "inference", "footprint")

# Failures of the loading child that are the user's input, not the harness: exit status 2.
INPUT_ERRORS = ("RowsNeeded: ", "NotAnEstimator: ")


class LoadFailed(Exception):
    """The admitted file could not be loaded or given evaluation rows, with the reason."""

    def __init__(self, message: str, bad_input: bool):
        super().__init__(message)
        self.bad_input = bad_input  # no estimator, or bad or missing rows: the user's input


def model_source(path: Path, data: Path | None, trust: tuple[str, ...],
                 unconfined: bool = False) -> ModelFile:
    """Check the arguments, audit the file in both stages (raises `Refused`), register it.

    The static walk first (nothing runs), then the confined load: a file passes only if
    neither flags anything the user has not trusted. Where this machine cannot confine a
    process the command refuses, unless `unconfined` says to load it without (then only
    the static walk stands between the file and the user's account)."""
    from persistbench.audit import render
    from persistbench.schedule.capped import audit_capped
    from persistbench.schedule.confine import unavailable
    from persistbench.schedule.detonate import add_load_stage
    from persistbench.schedule.launch import cancel, start_ahead

    if not Path(path).is_file():
        raise UsageError(f"{path}: no such model file")
    if data is not None:
        check_readable(Path(data))
    reason = unavailable()
    if reason and not unconfined:
        raise UsageError(f"{path}: not loaded: {reason}; pass --unconfined to load it "
                         "without confinement, trusting the static audit alone")
    if reason:
        print(f"persistbench: warning: {reason}; loading {path} unconfined (--unconfined)",
              file=sys.stderr)
    started = time.monotonic()
    early = None if reason else start_ahead(Path(path), trust)  # imports during the walk
    try:
        report = admit(Path(path), trust, audit_capped)
    except BaseException:
        if early:
            cancel(early)
        raise
    if not reason:
        add_load_stage(report, trust, started, ahead=early)
        if report.findings:
            raise Refused(f"{render(report)}\nrefused: {path} is not loaded any further: "
                          "its confined load attempted what a model file never needs")
    return register(path, data, report, trust, unconfined=bool(reason))


def load_into_cache(entry: ModelFile, seed: int, scratch: Path) -> dict:
    """Load the file and build its rows in a child (the runner's training step): its facts."""
    from persistbench.schedule.runner import train_model

    trained = train_model(entry.name, CUSTOM_SIZE, seed, scratch)
    if trained["status"] != "ok":
        reason = str(trained.get("reason") or trained["status"])
        prefix = next((p for p in INPUT_ERRORS if reason.startswith(p)), None)
        raise LoadFailed(reason.removeprefix(prefix) if prefix
                         else f"loading {entry.path} failed: {reason}", prefix is not None)
    return trained.get("model_info", {})


def plan(entry: ModelFile, formats: list[str], full: bool, options: dict) -> list[Cell]:
    """Every format of the model: the round trip, and with `full` the other experiments."""
    chosen = FULL_EXPERIMENTS if full else BASIC_EXPERIMENTS
    return [cell for name in chosen
            for cell in experiment(name).plan([entry.name], [CUSTOM_SIZE], formats, options)]


def describe(entry: ModelFile, info: dict) -> list[str]:
    """What is being measured, before the measuring starts."""
    if entry.written_by_harness:
        source = (f"estimator handed over in Python, written by persistbench to {entry.path} "
                  f"(sha256 {entry.sha256[:12]}…), not audited: the file is the harness's own")
    else:
        source = (f"model file: {entry.path} ({entry.format}, sha256 {entry.sha256[:12]}…), "
                  "audit: " + (f"clean once {', '.join(entry.trusted)} trusted"
                               if entry.trusted else "clean"))
    lines = [source, f"estimator: {info.get('estimator', '?')}",
             f"evaluation rows: {info.get('evaluation_rows', '?')}"]
    lines += [f"loader warning: {w}" for w in info.get("load_warnings", [])]
    return lines


def run_advice(entry: ModelFile, cells: list[Cell], options, scratch_base: Path) -> dict:
    """Load the model once into the cache (failing fast), then measure; the results data."""
    from persistbench.schedule.runner import make_scratch, run

    scratch_base.mkdir(parents=True, exist_ok=True)
    scratch = make_scratch(scratch_base)
    try:
        info = load_into_cache(entry, options.seed, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for line in describe(entry, info):
        print(line)
    return run(cells, options).data
