"""`persistbench run`: plan cells from the options, measure them, print the summary, write the
report."""

from __future__ import annotations

import sys
from pathlib import Path

from persistbench.commands.options import (
    count,
    default_output,
    latest_output,
    measure_then_report,
    model_file_options,
    names,
    positive,
    precision,
    refuse_overwrite,
    trusted,
    writable_file,
)
from persistbench.experiments import EXPERIMENT_MODULES, experiment
from persistbench.schedule.profiles import PROFILES
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import CUSTOM_SIZE, MODELS, SIZES, UsageError, user_spec

DEFAULT_EXPERIMENTS = ["roundtrip"]


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="measure cells and write a results file")
    p.add_argument("--profile", choices=list(PROFILES), default="quick")
    p.add_argument("--models", help="comma-separated zoo models (default: all)")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--sizes", help="comma-separated sizes (default: from the profile)")
    p.add_argument("--experiments", help="comma-separated experiments (default: roundtrip)")
    p.add_argument("--repeat", type=positive(int), help="samples per timed phase")
    p.add_argument("--precision", type=precision, metavar="P",
                   help="sample each timing until its median's 95%% interval is within ±P "
                        "(e.g. 5%%), or its time budget (--budget) is spent; --repeat is "
                        "then unused")
    p.add_argument("--budget", type=positive(float), metavar="S",
                   help="seconds of samples per timed phase and cell (default 30)")
    p.add_argument("--runs", type=positive(int), default=1, metavar="K",
                   help="independent passes over every cell, interleaved (default 1); "
                        "compare needs 2 or more per side to judge timings")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--starts", type=count,
                   help="fresh interpreters per round-trip cell and pass for the "
                        "server-start measures (default: 1 in the quick profile, else 3; "
                        "0 skips them)")
    p.add_argument("--workers", type=positive(int),
                   help="fresh processes a round-trip cell's dump and load samples are "
                        "spread over, each with its own warm-up (default 1)")
    p.add_argument("--model", help="your own model: package.module:factory returning "
                                   "(fitted_estimator, X_eval)")
    p.add_argument("--model-file", type=Path, metavar="FILE",
                   help="your own saved model (pickle, joblib, cloudpickle, skops), audited "
                        "before a child process loads it")
    model_file_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=positive(int), default=4,
                   help="serving processes of the sharing experiment (default 4)")
    p.add_argument("--output", type=Path, help="results file (default results/run-<time>.json)")
    p.add_argument("--resume", action="store_true", help="skip cells already in --output")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.add_argument("--only", action="store_true",
                   help="report this run alone (default: every results file of this machine "
                        "in the output's folder, newest cell wins)")
    p.set_defaults(func=execute)

def plan_cells(args) -> list:
    prof = PROFILES[args.profile]
    sizes = names(args.sizes, SIZES, "size") or prof["sizes"]
    formats = names(args.formats, list(FORMATS), "format") or list(FORMATS)
    experiments = names(args.experiments, EXPERIMENT_MODULES, "experiment") or \
        DEFAULT_EXPERIMENTS
    models = names(args.models, list(MODELS), "model")
    own = []  # (name, sizes) of the user's own models
    if args.model:
        spec = user_spec(args.model)  # imports it now: a bad target fails before any work
        own.append((args.model, list(spec.sizes())))
    if args.model_file:
        from persistbench.commands.advise import model_source

        entry = model_source(args.model_file, args.data, trusted(args.trust))
        own.append((entry.name, [CUSTOM_SIZE]))
    elif args.data or args.trust:
        raise UsageError("--data and --trust apply to --model-file")
    options = {"repeat": args.repeat or prof["repeat"], "seed": args.seed,
               "processes": args.processes,
               "starts": prof["starts"] if args.starts is None else args.starts,
               "workers": args.workers or prof["workers"]}
    if args.precision is not None:
        options["precision"] = args.precision
    if args.budget is not None:
        options["budget_s"] = args.budget
    cells = []
    for name in experiments:
        exp = experiment(name)
        if models or not own:
            cells += exp.plan(models or list(MODELS), sizes, formats, options)
        for model, model_sizes in own:
            cells += exp.plan([model], model_sizes, formats, options)
    return cells

def execute(args) -> int:
    from persistbench.report.terminal import print_summary
    from persistbench.schedule.runner import RunOptions, run

    cells = plan_cells(args)
    if args.resume and args.output is None:
        output = latest_output()
    else:
        output = args.output or default_output()
        refuse_overwrite(output, args.resume)
    writable_file(output, "--output")
    options = RunOptions(output=output, resume=args.resume, timeout_s=args.timeout,
                         profile=args.profile, seed=args.seed, argv=sys.argv,
                         calibrate=not args.no_calibrate, runs=args.runs)
    return measure_then_report(output, lambda: print_summary(run(cells, options).data), args.only)
