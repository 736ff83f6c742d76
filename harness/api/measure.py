"""`persistbench.advise` and `persistbench.run`: measuring from Python, through the same
planning (`schedule.planning`, `schedule.advice`) and runner as the command line.

Measuring happens in child processes, as always: the estimator handed to `advise` is written
once by the harness (cloudpickle, into the model-file cache) and every child loads that file,
so the notebook's own process never measures and never loads anything it did not already
hold. Progress shows as rich's bar, which renders in Jupyter (with ipywidgets installed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persistbench.api.results import Results
from persistbench.schedule.planning import (
    default_output,
    names,
    plan_cells,
    run_sampling_s,
    writable_file,
)
from persistbench.sources.models import UsageError


class Interrupted(KeyboardInterrupt):
    """Measuring was interrupted (Ctrl-C, a kernel interrupt); what was measured is kept.

    `results` holds the cells finished before the interrupt (None if none was), the same as
    `persistbench.read_results(path)` on the results file the message names.
    """

    def __init__(self, message: str, results: Results | None):
        super().__init__(message)
        self.results = results


def _checked_output(output: str | Path | None) -> Path:
    from persistbench.sources.formats import PLUGIN_ERROR

    if PLUGIN_ERROR:  # a format plugin failed to import: nothing can be planned with it
        raise UsageError(PLUGIN_ERROR)
    path = Path(output) if output is not None else default_output()
    writable_file(path, "output")
    if path.exists():
        raise UsageError(f"output {path} exists; choose another file (results files are "
                         "never overwritten)")
    return path


def _measure(output: Path, work: Callable[[], object]) -> Results:
    """Run `work` into `output`; an interrupt keeps what was measured and says where."""
    try:
        work()
    except KeyboardInterrupt:
        if output.exists():
            raise Interrupted(f"interrupted; what was measured is kept in {output}: "
                              f"persistbench.read_results({str(output)!r})",
                              Results([output])) from None
        raise Interrupted("interrupted before the first result was written", None) from None
    return Results([output])


def advise(estimator: Any, X: Any, *, formats: Sequence[str] | None = None,
           full: bool = False, repeat: int | None = None, output: str | Path | None = None,
           timeout: float = 600.0, seed: int = 0, processes: int = 4,
           calibrate: bool = True) -> Results:
    """Measure every persistence format on a fitted estimator; the verdict for it.

    What `persistbench advise FILE` does for a saved model, for an estimator in memory:
    the harness writes it once (with cloudpickle; no audit, the file is the harness's own),
    then child processes dump, load and check it with every format, and the results file is
    read back. Formats that cannot save this model are recorded as such, not raised.

    Args:
        estimator: a fitted estimator or pipeline (anything with ``predict``).
        X: rows it predicts on (array or DataFrame); the first 500 are used to check that
            every loaded copy predicts exactly what the original does.
        formats: format names (default: all; see ``persistbench list``).
        full: also measure sharing across processes, inference latency and the serving
            footprint (several minutes), not only the round trip.
        repeat: samples per timed phase (default 5).
        output: the results file to write (default ``results/run-<time>.json``).
        timeout: seconds per cell before it is stopped and recorded as a timeout.
        seed: seed of anything random the experiments draw.
        processes: serving processes of the sharing experiment (``full`` only).
        calibrate: measure the machine's memory bandwidth first (a few seconds).

    Returns:
        Results: shows the verdict table in a notebook; ``.to_pandas()``, ``.report()``,
        ``.compare()``.

    Raises:
        ValueError: bad input (not an estimator, X not 2-D, unknown format, rows the model
            cannot predict on), with one line that says what to change.
        RuntimeError: the child could not load the estimator back from the harness's file
            (it pickled, but does not unpickle), with the loader's reason.
        Interrupted: on Ctrl-C or a kernel interrupt; ``.results`` holds what was measured.
    """
    from persistbench.schedule.advice import LoadFailed, plan, run_advice
    from persistbench.schedule.profiles import PROFILES
    from persistbench.schedule.runner import RunOptions
    from persistbench.sources.formats import FORMATS
    from persistbench.sources.model_file import register_object

    if repeat is not None and repeat < 1:
        raise UsageError(f"repeat={repeat}: give 1 or more samples per phase")
    path = _checked_output(output)
    cells_options = {"repeat": repeat or PROFILES["quick"]["repeat"], "seed": seed,
                     "processes": processes, "workers": PROFILES["quick"]["workers"]}
    chosen = names(formats, list(FORMATS), "format") or list(FORMATS)
    entry = register_object(estimator, X)
    cells = plan(entry, chosen, full, cells_options)
    options = RunOptions(output=path, timeout_s=timeout, profile="advise", seed=seed,
                         argv=["persistbench.advise()"], calibrate=calibrate)
    try:
        return _measure(path, lambda: run_advice(entry, cells, options, path.parent))
    except LoadFailed as exc:
        if exc.bad_input:
            raise UsageError(str(exc)) from None
        raise RuntimeError(str(exc)) from None


def run(models: str | Sequence[str] | None = None, formats: str | Sequence[str] | None = None,
        profile: str = "quick", *, sizes: str | Sequence[str] | None = None,
        experiments: str | Sequence[str] | None = None, repeat: int | None = None,
        runs: int = 1, starts: int | None = None, workers: int | None = None,
        model: str | None = None, model_file: str | Path | None = None,
        data: str | Path | None = None, trust: Sequence[str] = (),
        output: str | Path | None = None, timeout: float = 600.0, seed: int = 0,
        processes: int = 4, calibrate: bool = True) -> Results:
    """Measure zoo models (or your own) with every format: ``persistbench run`` from Python.

    Takes the command's options as keywords, names as lists (or comma-separated strings).
    No report is written; call ``.report()`` on the result.

    Args:
        models: zoo models (default: all; see ``persistbench list``).
        formats: formats (default: all).
        profile: ``quick``, ``default`` or ``large``: sizes, samples and server starts.
        sizes: ``small``, ``medium``, ``large`` (default: the profile's).
        experiments: default ``roundtrip``; also ``sharing``, ``inference``, ``footprint``,
            ``security``, ``robustness``.
        repeat: samples per timed phase (default: the profile's).
        runs: independent passes over every cell (2 or more for ``compare`` to judge times).
        starts: fresh interpreters per round-trip cell and pass (0 skips those measures).
        workers: fresh processes a round trip's samples are spread over.
        model: your own ``package.module:factory`` returning ``(fitted_estimator, X)``.
        model_file: your own saved model, audited before a child process loads it.
        data: evaluation rows for ``model_file`` (X.npy, table.csv or table.parquet).
        trust: modules the audit flagged in ``model_file`` that you accept.
        output, timeout, seed, processes, calibrate: as for ``advise``.

    Returns:
        Results of the run.

    Raises:
        ValueError: bad input, with one line that says what to change.
        Refused: the audit flagged ``model_file``; the message lists the findings.
        Interrupted: on Ctrl-C or a kernel interrupt; ``.results`` holds what was measured.
    """
    from persistbench.schedule.runner import RunOptions
    from persistbench.schedule.runner import run as run_cells

    for name, value in (("repeat", repeat), ("runs", runs), ("workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"{name}={value}: give 1 or more")
    path = _checked_output(output)
    cells = plan_cells(profile=profile, models=models, formats=formats,
                       sizes=sizes, experiments=experiments, repeat=repeat,
                       starts=starts, workers=workers, seed=seed, processes=processes,
                       model=model, model_file=Path(model_file) if model_file else None,
                       data=Path(data) if data else None, trust=tuple(trust))
    options = RunOptions(output=path, timeout_s=timeout, profile=profile, seed=seed,
                         argv=["persistbench.run()"], calibrate=calibrate, runs=runs,
                         sampling_s=run_sampling_s(profile, repeat))
    return _measure(path, lambda: run_cells(cells, options))
