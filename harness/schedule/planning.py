"""What a measuring run is made of, decided before anything runs: the cells a run's options
name, and where its results file goes.

Both fronts that start runs call these, the command line (`persistbench run`) and the Python
API (`persistbench.run`), so a name is checked, and a cell planned, the same way in either.
Bad input raises `UsageError` with one line that names what was wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from persistbench.experiments import EXPERIMENT_MODULES, Cell, experiment
from persistbench.schedule.profiles import PROFILES
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import CUSTOM_SIZE, MODELS, SIZES, UsageError, user_spec

DEFAULT_EXPERIMENTS = ["roundtrip"]


def names(text: str | Iterable[str] | None, valid, what: str) -> list[str] | None:
    """Comma-separated names (or a list of them) checked against `valid`; None when not given."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else [str(n) for n in text]
    chosen = [n.strip() for n in parts if n.strip()]
    unknown = [n for n in chosen if n not in valid]
    if unknown or not chosen:
        raise UsageError(f"unknown {what} {', '.join(unknown) or repr(text)}; "
                         f"valid: {', '.join(valid)}")
    return chosen


def plan_cells(*, profile: str = "quick", models=None, formats=None, sizes=None,
               experiments=None, repeat: int | None = None, starts: int | None = None,
               workers: int | None = None, seed: int = 0, processes: int = 4,
               model: str | None = None, model_file: Path | None = None,
               data: Path | None = None, trust: tuple[str, ...] = (),
               unconfined: bool = False, precision: float | None = None,
               budget_s: float | None = None) -> list[Cell]:
    """The cells of a run: experiments x (zoo models and the user's own) x sizes x formats.

    A user factory is imported and a model file audited here, so a bad one fails before any
    work starts.
    """
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    sizes = names(sizes, SIZES, "size") or prof["sizes"]
    formats = names(formats, list(FORMATS), "format") or list(FORMATS)
    experiments = names(experiments, EXPERIMENT_MODULES, "experiment") or DEFAULT_EXPERIMENTS
    models = names(models, list(MODELS), "model")
    own = []  # (name, sizes) of the user's own models
    if model:
        spec = user_spec(model)  # imports it now: a bad target fails before any work
        own.append((model, list(spec.sizes())))
    if model_file:
        from persistbench.schedule.advice import model_source

        entry = model_source(model_file, data, trust, unconfined)
        own.append((entry.name, [CUSTOM_SIZE]))
    elif data or trust or unconfined:
        raise UsageError("--data, --trust and --unconfined apply to --model-file")
    options = {"repeat": repeat or prof["repeat"], "seed": seed, "processes": processes,
               "starts": prof["starts"] if starts is None else starts,
               "workers": workers or prof["workers"]}
    if precision is None and repeat is None:  # the profile's, unless a count was asked for
        precision = prof.get("precision")
        budget_s = prof.get("budget_s") if budget_s is None else budget_s
    if precision is not None:
        options["precision"] = precision
    if budget_s is not None:
        options["budget_s"] = budget_s
    cells = []
    for name in experiments:
        exp = experiment(name)
        if models or not own:
            cells += exp.plan(models or list(MODELS), sizes, formats, options)
        for own_model, model_sizes in own:
            cells += exp.plan([own_model], model_sizes, formats, options)
    return cells


def run_sampling_s(profile: str, repeat: int | None = None, precision: float | None = None,
                   budget_s: float | None = None) -> float | None:
    """The profile's time budget for the whole run's samples, shared by its cells
    (`schedule.budget`); None when the options ask for a count, a precision or a budget of
    their own, which then hold per phase and cell."""
    if repeat is not None or precision is not None or budget_s is not None:
        return None
    return PROFILES[profile].get("sampling_s")


def default_output() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"run-{stamp}.json"


def writable_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that could not be written (one line, exit 2)."""
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory; give a file name")
    writable_dir(path.parent, option, shown=path)


def writable_dir(path: Path, option: str, shown: Path | None = None) -> None:
    """Create `path` if needed and prove a file can be written in it (works as root too,
    where permission bits say yes to everything: only a real attempt tells)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise UsageError(f"cannot write {option} {shown or path}: "
                         f"{exc.strerror or exc}; choose another path") from None
