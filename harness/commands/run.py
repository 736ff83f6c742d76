"""`persistbench run`: plan cells from the options, measure them, print the summary, write the
report."""

from __future__ import annotations

import sys
from pathlib import Path

from persistbench.commands.options import (
    count,
    latest_output,
    measure_then_report,
    model_file_options,
    positive,
    precision,
    refuse_overwrite,
    trusted,
)
from persistbench.schedule.planning import (
    default_output,
    plan_cells,
    run_sampling_s,
    writable_file,
)
from persistbench.schedule.profiles import PROFILES


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

def execute(args) -> int:
    from persistbench.report.terminal import print_summary
    from persistbench.schedule.runner import RunOptions, run

    cells = plan_cells(profile=args.profile, models=args.models, formats=args.formats,
                       sizes=args.sizes, experiments=args.experiments, repeat=args.repeat,
                       starts=args.starts, workers=args.workers, seed=args.seed,
                       processes=args.processes, model=args.model, model_file=args.model_file,
                       data=args.data, trust=trusted(args.trust),
                       unconfined=args.unconfined, precision=args.precision,
                       budget_s=args.budget)
    if args.resume and args.output is None:
        output = latest_output()
    else:
        output = args.output or default_output()
        refuse_overwrite(output, args.resume)
    writable_file(output, "--output")
    options = RunOptions(output=output, resume=args.resume, timeout_s=args.timeout,
                         profile=args.profile, seed=args.seed, argv=sys.argv,
                         calibrate=not args.no_calibrate, runs=args.runs,
                         sampling_s=run_sampling_s(args.profile, args.repeat, args.precision,
                                                   args.budget))
    return measure_then_report(output, lambda: print_summary(run(cells, options).data), args.only)
