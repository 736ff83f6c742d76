"""`persistbench compat`: save with one scikit-learn version, load with another.

The environments are built (or reused) first, one preloaded server is started in each, and
then the runner measures every (A->B, model, format) cell of the compat experiment.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from persistbench.commands.options import measure_then_report, positive, refuse_overwrite
from persistbench.envs.builder import prepare, resolve_versions
from persistbench.envs.server import running
from persistbench.experiments import compat as experiment
from persistbench.report.compat_matrix import print_matrix
from persistbench.schedule.planning import names
from persistbench.schedule.runner import RunOptions, run
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import MODELS


def run_matrix(models: list[str], formats: list[str], versions: list[str], run_options,
               rebuild: bool = False) -> dict:
    """Build the environments, start one preloaded server in each, then measure every
    (A->B, model, format) cell through the runner (`run_options` is a
    `persistbench.schedule.runner.RunOptions`); the files saved with each A live in a scratch
    directory of
    this run only."""
    envs = [e.as_dict() for e in prepare(versions, rebuild=rebuild)]
    output = run_options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".persistbench-compat-", dir=output.parent))
    try:
        with running(envs, experiment.server_preload(formats)) as served:
            plan_options = {"seed": run_options.seed, "environments": served,
                            "artefacts_dir": str(scratch)}
            results = run(experiment.plan(models, ["small"], formats, plan_options),
                          run_options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The socket is gone with its server; how long it took to start is kept.
    results.data["run"]["compat_environments"] = [
        {k: v for k, v in env.items() if k != "server"} for env in served]
    results.flush()
    return results.data


def add_parser(sub) -> None:
    p = sub.add_parser("compat", help="save with one scikit-learn version, load with another")
    p.add_argument("--sklearn", help="comma-separated versions, X.Y (latest patch) or X.Y.Z "
                                     "(default: installed and the two previous minor releases)")
    p.add_argument("--models", help="comma-separated zoo models (default: all, size small)")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path,
                   help="results file (default results/compat-<time>.json)")
    p.add_argument("--resume", action="store_true", help="skip cells already in --output")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the cached environments of the listed versions")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.set_defaults(func=execute)


def execute(args) -> int:
    models = names(args.models, list(MODELS), "model") or list(MODELS)
    formats = names(args.formats, list(FORMATS), "format") or list(FORMATS)
    specs = [v.strip() for v in args.sklearn.split(",") if v.strip()] if args.sklearn else None
    output = args.output or Path("results") / datetime.now(timezone.utc).strftime(
        "compat-%Y%m%dT%H%M%SZ.json")
    refuse_overwrite(output, args.resume)
    options = RunOptions(output=output, resume=args.resume, timeout_s=args.timeout,
                         seed=args.seed, argv=sys.argv, calibrate=not args.no_calibrate)
    return measure_then_report(output, lambda: print_matrix(
        run_matrix(models, formats, resolve_versions(specs), options, args.rebuild)))
