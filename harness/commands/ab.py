"""`persistbench ab`: the same cells measured in two Python environments in one session,
alternated pair by pair, and judged from the pairs (B/A with intervals; exit 1 on a
regression if asked)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from persistbench.commands.options import (
    fraction,
    model_file_options,
    positive,
    refuse_overwrite,
    trusted,
)
from persistbench.schedule.planning import names, writable_file
from persistbench.schedule.profiles import PROFILES
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import CUSTOM_SIZE, MODELS, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("ab", help="measure the same cells in two environments in one session, "
                                  "alternated, and report paired B/A ratios")
    for side in ("a", "b"):
        p.add_argument(f"--{side}", required=True, metavar="REQS|PATH",
                       help=f"side {side.upper()}: requirements (e.g. joblib==1.5.3, several "
                            "comma-separated; the rest of the stack pinned to this "
                            "interpreter's versions) or an existing environment (a venv "
                            "directory or its python)")
    p.add_argument("--models", help="comma-separated zoo models (default: all)")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--model-file", type=Path, metavar="FILE",
                   help="your own model file instead of the zoo (audited first, as in advise)")
    model_file_options(p)
    p.add_argument("--rounds", type=positive(int), default=10,
                   help="rounds: one pair of blocks per cell each, fresh processes each "
                        "(default 10)")
    p.add_argument("--samples", type=positive(int), default=20,
                   help="steps per side, cell and round, A's and B's alternating; a step "
                        "is a series of dumps, of warm loads, a cold load and two peak-memory "
                        "samples (default 20; fewer when a cell's --budget is spent)")
    p.add_argument("--budget", type=positive(float), default=2.0, metavar="S",
                   help="seconds per cell and round after which no further sample is "
                        "taken (default 2)")
    p.add_argument("--threshold", type=float, default=1.0, metavar="PCT",
                   help="practical threshold for times (default 1)")
    p.add_argument("--memory-threshold", type=float, default=5.0, metavar="PCT",
                   help="practical threshold for peak memory (default 5)")
    p.add_argument("--alpha", type=fraction, default=0.05,
                   help="false-discovery rate across all measures (default 0.05)")
    p.add_argument("--fail-on-regression", type=positive(float), nargs="?", const=0.0,
                   metavar="PCT", help="exit 1 when a measure is flagged worse (and, with "
                                       "PCT, worse by more than PCT percent)")
    p.add_argument("--all", action="store_true", help="print every measure, not only changes")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds per block before it is killed (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, help="results file (default results/ab-<time>.json)")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the cached environments of requirement sides")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.set_defaults(func=execute)


def side_environment(spec: str, rebuild: bool) -> dict:
    """A side as given: an existing interpreter, or requirements built into a venv."""
    from persistbench.envs.builder import given_environment, requirement_environment

    path = Path(spec).expanduser()
    if path.exists() or "/" in spec:
        env = given_environment(path)
    else:
        reqs = [r.strip() for r in spec.split(",") if r.strip()]
        if not reqs:
            raise UsageError("--a/--b: give requirements (e.g. joblib==1.5.3) or a venv path")
        env = requirement_environment(reqs, rebuild=rebuild)
        if not env.ok:
            raise UsageError(f"requirements {spec!r} could not be installed: {env.reason}")
    return {"spec": spec, **env.as_dict()}


def _cells(args) -> list:
    from persistbench.experiments import Cell

    formats = names(args.formats, list(FORMATS), "format") or list(FORMATS)
    if args.model_file is not None:
        if args.models:
            raise UsageError("--model-file and --models exclude each other")
        from persistbench.schedule.advice import model_source

        entry = model_source(args.model_file, args.data, trusted(args.trust))
        models, sizes = [entry.name], [CUSTOM_SIZE]
    else:
        if args.data or args.trust:
            raise UsageError("--data and --trust go with --model-file")
        models = names(args.models, list(MODELS), "model") or list(MODELS)
        sizes = PROFILES["quick"]["sizes"]
    return [Cell("ab", m, s, f, needs_model=False) for m in models for s in sizes
            for f in formats]


def execute(args) -> int:
    from persistbench.report.ab import analyse
    from persistbench.report.ab_output import print_ab
    from persistbench.schedule.interleave import ABOptions, SideUnavailable, run_ab

    cells = _cells(args)
    output = args.output or Path("results") / datetime.now(timezone.utc).strftime(
        "ab-%Y%m%dT%H%M%SZ.json")
    refuse_overwrite(output, resume=False)
    writable_file(output, "--output")
    sides = {"a": side_environment(args.a, args.rebuild),
             "b": side_environment(args.b, args.rebuild)}
    options = ABOptions(output=output, rounds=args.rounds, samples=args.samples,
                        seed=args.seed, timeout_s=args.timeout, argv=sys.argv, budget_s=args.budget,
                        calibrate=not args.no_calibrate, profile="ab")
    print(f"{len(cells)} cells x {args.rounds} rounds x 2 sides, up to {args.samples} steps "
          "a side", flush=True)
    try:
        data = run_ab(cells, sides, options, say=lambda text: print(text, flush=True))
    except SideUnavailable as exc:
        print(f"persistbench: error: {exc}" + (f"; what was measured is in {output}"
                                               if output.exists() else ""), file=sys.stderr)
        return 1
    comp = analyse(data, args.threshold, args.memory_threshold, args.alpha)
    print_ab(comp, show_all=args.all)
    print(f"results: {output}")
    if args.fail_on_regression is not None:
        worse = comp.regressions(args.fail_on_regression)
        if worse:
            print(f"persistbench: {len(worse)} regression(s): {'; '.join(worse[:5])}"
                  + (" …" if len(worse) > 5 else ""), file=sys.stderr)
            return 1
    return 0
