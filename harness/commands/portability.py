"""`persistbench portability`: save on one CPU architecture, load on another.

The Debian trees are built (or reused) first, one preloaded server is started in each, and
then the runner measures every (A->B, model, format) cell of the portability experiment: from
the amd64 tree to each architecture named, and back from those named in `--reverse`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from persistbench.commands.options import measure_then_report, positive, refuse_overwrite
from persistbench.envs.arch import missing_tools, parse_arches, prepare
from persistbench.envs.server import running
from persistbench.envs.wheels import prepare_current
from persistbench.experiments import compat
from persistbench.experiments import portability as experiment
from persistbench.report.portability_views import print_matrix
from persistbench.schedule.planning import names
from persistbench.schedule.runner import RunOptions, run
from persistbench.sources.models import DEFAULT_VARIANTS, MODELS, UsageError

# The formats that carry a Python object from one interpreter to another.
FORMATS = ("pickle", "pickle-p5", "joblib", "joblib-zlib3", "cloudpickle")
DEFAULT_ARCHES = "i386,arm64,s390x"


def directions(keys: list[str], reverse: list[str]) -> list[str]:
    """From the home side (the first key) to each other, and back from those whose
    architecture (the key's part before `+`) is in `reverse`."""
    home, *others = keys
    return [f"{home}->{k}" for k in others] + [
        f"{k}->{home}" for k in others if k.split("+")[0] in reverse]


def run_matrix(models: list[str], formats: list[str], arches: list[str], reverse: list[str],
               run_options, rebuild: bool = False, current: bool = True) -> dict:
    """Build the trees (and, with `current`, the current wheels stack where the index has
    it), start a server in each, then measure every cell through the runner; the saved
    files live in a scratch directory of this run only."""
    built = prepare(arches, rebuild=rebuild)
    wheels = prepare_current(built, rebuild=rebuild) if current else []
    trees = [t.as_env() for t in [*built, *wheels]]
    paths = directions([t.key for t in built], reverse) + (
        directions([t.key for t in wheels], reverse) if wheels else [])
    output = run_options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".persistbench-portability-", dir=output.parent))
    try:
        with running(trees, compat.server_preload(formats)) as served:
            plan_options = {"seed": run_options.seed, "environments": served,
                            "artefacts_dir": str(scratch),
                            "directions": paths}
            print(f"saving {len(models)} models in {len(formats)} formats on "
                  f"{', '.join(dict.fromkeys(p.split('->')[0] for p in paths))}, at once")
            experiment.presave(models, ["small"], formats, plan_options, scratch / "saving",
                               run_options.timeout_s)
            results = run(experiment.plan(models, ["small"], formats, plan_options),
                          run_options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results.data["run"]["portability_trees"] = [
        {k: v for k, v in env.items() if k != "server"} for env in served]
    results.flush()
    return results.data


def add_parser(sub) -> None:
    p = sub.add_parser("portability",
                       help="save on amd64, load on other CPU architectures (Debian trees)")
    p.add_argument("--arch", default=DEFAULT_ARCHES,
                   help=f"comma-separated architectures to load on (default {DEFAULT_ARCHES})")
    p.add_argument("--reverse", default="arm64",
                   help="comma-separated architectures that also save for amd64 to load "
                        "(default arm64 when it is in --arch; 'none' for none)")
    p.add_argument("--models", help="comma-separated models (default: the zoo, size small, "
                                    f"and {', '.join(DEFAULT_VARIANTS)})")
    p.add_argument("--formats", help=f"comma-separated formats (default: {', '.join(FORMATS)})")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path,
                   help="results file (default results/portability-<time>.json)")
    p.add_argument("--resume", action="store_true", help="skip cells already in --output")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the cached trees of the listed architectures")
    p.add_argument("--no-wheels", action="store_true",
                   help="leave out the second column: the current scikit-learn stack's wheels "
                        "on arm64 and amd64 (needs the package index)")
    p.set_defaults(func=execute)


def execute(args) -> int:
    arches = parse_arches(args.arch)
    reverse = [] if args.reverse == "none" else [
        a for a in parse_arches(args.reverse) if a in arches]
    known = [*MODELS, *DEFAULT_VARIANTS]
    models = names(args.models, known, "model") or known
    formats = names(args.formats, FORMATS, "format") or list(FORMATS)
    problem = missing_tools(arches)
    if problem:
        raise UsageError(problem)
    output = args.output or Path("results") / datetime.now(timezone.utc).strftime(
        "portability-%Y%m%dT%H%M%SZ.json")
    refuse_overwrite(output, args.resume)
    options = RunOptions(output=output, resume=args.resume, timeout_s=args.timeout,
                         seed=args.seed, argv=sys.argv, calibrate=False)
    return measure_then_report(output, lambda: print_matrix(
        run_matrix(models, formats, arches, reverse, options, args.rebuild,
                   not args.no_wheels)))
