"""`persistbench` command line: parse, validate, hand over to the harness. Nothing measured here."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.experiments import EXPERIMENT_MODULES, experiment
from harness.formats import FORMATS, PLUGIN_ERROR, Unsupported
from harness.model_file import Refused
from harness.models import CUSTOM_SIZE, MODELS, SIZES, UsageError, user_spec
from harness.profiles import PROFILES
from harness.results import ResultsError

DEFAULT_EXPERIMENTS = ["roundtrip"]
REPORTS_DIR = Path("reports")


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage is one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _names(text: str | None, valid, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise UsageError(f"unknown {what} {', '.join(unknown) or repr(text)}; "
                         f"valid: {', '.join(valid)}")
    return names


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie between 0 and 1")
    return value


def cmd_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    models = Table("model", "tags", "what it is", title="models (sizes: small, medium, large)")
    for spec in MODELS.values():
        models.add_row(spec.name, ", ".join(spec.tags), spec.description)
    formats = Table("format", "library", "runs code on load", "memory maps", "compression",
                    title="formats")
    for fmt in FORMATS.values():
        formats.add_row(fmt.name, fmt.library, "yes" if fmt.executes_code_on_load else "no",
                        "yes" if fmt.memory_maps else "no", fmt.compression or "-")
    experiments = Table("experiment", "what it measures", title="experiments")
    for name in EXPERIMENT_MODULES:
        experiments.add_row(name, experiment(name).DESCRIPTION)
    profiles = Table("profile", "sizes", "repeat", "starts", "workers", title="profiles")
    for name, prof in PROFILES.items():
        profiles.add_row(name, ", ".join(prof["sizes"]),
                         *(str(prof[k]) for k in ("repeat", "starts", "workers")))
    for table in (models, formats, experiments, profiles):
        console.print(table)
    return 0


def _default_output() -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("results") / f"run-{stamp}.json"


def _latest_output() -> Path:
    found = sorted(Path("results").glob("run-*.json"))
    if not found:
        raise UsageError("--resume without --output: no results/run-*.json to resume; "
                         "pass --output FILE")
    return found[-1]


def plan_cells(args) -> list:
    prof = PROFILES[args.profile]
    sizes = _names(args.sizes, SIZES, "size") or prof["sizes"]
    formats = _names(args.formats, list(FORMATS), "format") or list(FORMATS)
    experiments = _names(args.experiments, EXPERIMENT_MODULES, "experiment") or \
        DEFAULT_EXPERIMENTS
    models = _names(args.models, list(MODELS), "model")
    own = []  # (name, sizes) of the user's own models
    if args.model:
        spec = user_spec(args.model)  # imports it now: a bad target fails before any work
        own.append((args.model, list(spec.sizes())))
    if args.model_file:
        from harness.advise import model_source

        entry = model_source(args.model_file, args.data, _trusted(args.trust))
        own.append((entry.name, [CUSTOM_SIZE]))
    elif args.data or args.trust:
        raise UsageError("--data and --trust apply to --model-file")
    options = {"repeat": args.repeat or prof["repeat"], "seed": args.seed,
               "processes": args.processes,
               "starts": prof["starts"] if args.starts is None else args.starts,
               "workers": args.workers or prof["workers"]}
    cells = []
    for name in experiments:
        exp = experiment(name)
        if models or not own:
            cells += exp.plan(models or list(MODELS), sizes, formats, options)
        for model, model_sizes in own:
            cells += exp.plan([model], model_sizes, formats, options)
    return cells


def _trusted(values: list[str] | None) -> tuple[str, ...]:
    """--trust a b, --trust a,b and repeated --trust all mean the same list."""
    return tuple(dict.fromkeys(n.strip() for v in values or () for n in v.split(",")
                               if n.strip()))


def _refuse_overwrite(output: Path, resume: bool) -> None:
    if output.exists() and not resume:
        raise UsageError(f"{output} exists; pass --resume to continue it or choose another "
                         "--output")


def writable_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that could not be written (one line, exit 2)."""

    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory; give a file name")
    writable_dir(path.parent, option, shown=path)


def writable_dir(path: Path, option: str, shown: Path | None = None) -> None:
    """Create `path` if needed and prove a file can be written in it (works as root too,
    where permission bits say yes to everything: only a real attempt tells)."""
    import tempfile

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise UsageError(f"cannot write {option} {shown or path}: "
                         f"{exc.strerror or exc}; choose another path") from None


def _measure(output: Path, measure_and_print, only: bool = False) -> int:
    """Run a measurement into `output`, then its report; Ctrl-C keeps what was measured."""
    try:
        measure_and_print()
    except KeyboardInterrupt as exc:
        print(f"interrupted; everything measured so far is in {output} "
              "(continue with --resume)" if output.exists() else
              "interrupted before the first result was written", file=sys.stderr)
        exc.reported = True  # the entry point then ends the process as interrupted
        raise
    print(f"results: {output}")
    return _report_after_run(output, only)


def cmd_run(args) -> int:
    from harness.runner import RunOptions, run
    from harness.summary import print_summary

    cells = plan_cells(args)
    if args.resume and args.output is None:
        output = _latest_output()
    else:
        output = args.output or _default_output()
        _refuse_overwrite(output, args.resume)
    writable_file(output, "--output")
    options = RunOptions(output=output, resume=args.resume, timeout_s=args.timeout,
                         profile=args.profile, seed=args.seed, argv=sys.argv,
                         calibrate=not args.no_calibrate, runs=args.runs)
    return _measure(output, lambda: print_summary(run(cells, options).data), args.only)


def cmd_advise(args) -> int:
    from harness import advise
    from harness.runner import RunOptions

    entry = advise.model_source(args.file, args.data, _trusted(args.trust))
    formats = _names(args.formats, list(FORMATS), "format") or list(FORMATS)
    options = {"repeat": args.repeat or PROFILES["quick"]["repeat"], "seed": args.seed,
               "processes": args.processes, "workers": PROFILES["quick"]["workers"]}
    cells = advise.plan(entry, formats, args.full, options)
    output = args.output or _default_output()
    _refuse_overwrite(output, resume=False)
    writable_file(output, "--output")
    run_options = RunOptions(output=output, timeout_s=args.timeout, profile="advise",
                             seed=args.seed, argv=sys.argv, calibrate=not args.no_calibrate)

    def measure_and_print() -> None:
        data = advise.run_advice(entry, cells, run_options, output.parent)
        advise.print_verdict(data, entry.name)

    try:
        return _measure(output, measure_and_print)
    except advise.LoadFailed as exc:
        if exc.bad_input:
            raise UsageError(f"{args.file}: {exc}") from None
        print(f"persistbench: error: {exc}", file=sys.stderr)
        return 1


def _report_after_run(output: Path, only: bool = False) -> int:
    """The machine's answer as a page a person can open; the results file is already safe.

    The page gathers every results file of this machine beside `output` (newest cell wins),
    so a serving run adds to the round trips measured earlier; `only` shows this run alone.
    """
    from harness.extras import missing

    problem = missing("report")
    if problem:  # measuring needs no report libraries; say how to get the page later
        print(f"persistbench: no HTML report: {problem}; then `persistbench report {output}`",
              file=sys.stderr)
        return 0
    try:
        from harness.report.data import with_siblings
        from harness.report.html import write_reports

        page = write_reports([output] if only else with_siblings([output]), REPORTS_DIR)[0]
    except Exception as exc:  # a rendering bug must not hide that the results are saved
        print(f"persistbench: error: the report could not be written ({exc}); the results "
              f"are in {output}: retry with `persistbench report {output}`", file=sys.stderr)
        return 1
    print(f"report: {page}")
    return 0


def cmd_report(args) -> int:
    from harness.report.data import load, with_siblings

    results = args.results if args.only else with_siblings(args.results)
    if args.format == "md":
        if args.output is not None:
            raise UsageError("--output applies to --format html; Markdown is printed")
        from harness.report.markdown import render_all

        print(render_all(load(results)), end="")
        return 0
    from harness.extras import missing

    problem = missing("report")
    if problem:
        raise UsageError(f"the HTML report needs {problem}; `--format md` works without")
    from harness.report.html import write_reports

    output = args.output or REPORTS_DIR
    writable_dir(output, "--output")
    for page in write_reports(results, output):
        print(f"report: {page}")
    print(f"index: {output / 'index.html'}")
    return 0


def cmd_compare(args) -> int:
    from harness.report.compare import compare, print_comparisons, write_html
    from harness.results import read

    if args.html:
        writable_file(args.html, "--html")
    if args.aa is not None:
        from harness.passes import split_passes

        if args.results:
            raise UsageError("--aa takes one results file and no others")
        data = read(args.aa)
        if data["run"].get("runs", 1) < 4:
            raise UsageError(f"--aa {args.aa}: {data['run'].get('runs', 1)} pass(es); the "
                             "self-check needs 2 a half: measure with `run --runs 4` or more")
        half = data["run"]["runs"] // 2
        pairs = [(*split_passes(data), f"{args.aa}, passes 1-{half} (first half)",
                  f"{args.aa}, passes {half + 1}-{data['run']['runs']} (second half)")]
    else:
        if len(args.results) < 2:
            raise UsageError("compare needs at least two results files: A.json B.json [C.json …]"
                             " (or --aa RESULTS.json)")
        base, *others = [read(p) for p in args.results]
        pairs = [(base, other, str(args.results[0]), str(path))
                 for path, other in zip(args.results[1:], others, strict=True)]
    comparisons = [compare(a, b, name_a, name_b, args.threshold, args.memory_threshold,
                           args.alpha, drift=not args.absolute)
                   for a, b, name_a, name_b in pairs]
    print_comparisons(comparisons, show_all=args.all)
    if args.aa is not None:
        comp = comparisons[0]
        flagged, total = len(comp.flagged()), len(comp.rows)
        print(f"A/A: {flagged} of {total} measures flagged ({flagged / max(total, 1):.1%}) "
              "between two halves of the same run: the false-alarm rate of the rule here")
    if args.html:
        print(f"comparison: {write_html(comparisons, args.html)}")
    if args.fail_on_regression is not None:
        worse = [r for c in comparisons for r in c.regressions(args.fail_on_regression)]
        if worse:
            beyond = f" beyond {args.fail_on_regression:g} %" if args.fail_on_regression else ""
            print(f"persistbench: {len(worse)} regression(s){beyond}: {'; '.join(worse[:5])}"
                  + (" …" if len(worse) > 5 else ""), file=sys.stderr)
            return 1
    return 0


def cmd_compat(args) -> int:
    from harness.experiments.compat import print_matrix
    from harness.runner import RunOptions
    from harness.version_envs import resolve_versions, run_matrix

    models = _names(args.models, list(MODELS), "model") or list(MODELS)
    formats = _names(args.formats, list(FORMATS), "format") or list(FORMATS)
    specs = [v.strip() for v in args.sklearn.split(",") if v.strip()] if args.sklearn else None
    output = args.output or Path("results") / datetime.now(timezone.utc).strftime(
        "compat-%Y%m%dT%H%M%SZ.json")
    _refuse_overwrite(output, args.resume)
    options = RunOptions(output=output, resume=args.resume, timeout_s=args.timeout,
                         seed=args.seed, argv=sys.argv, calibrate=not args.no_calibrate)
    return _measure(output, lambda: print_matrix(
        run_matrix(models, formats, resolve_versions(specs), options, args.rebuild)))


def cmd_audit(args) -> int:
    """Exit 0 clean, 1 flagged, 2 not a model file the audit understands: usable as a gate
    before loading a file."""
    import json

    from harness.audit import Unreadable, audit, render

    if args.regenerate_allowlist:
        from harness.audit.allowlist import main as regenerate

        return regenerate()
    if args.file is None:
        raise UsageError("audit: give a FILE (or --regenerate-allowlist)")
    trusted = tuple(n.strip() for n in (args.trust or "").split(",") if n.strip())
    try:
        report = audit(args.file, trusted)
    except Unreadable as exc:
        if args.json:
            print(json.dumps({"path": str(args.file), "exit_status": 2, "error": str(exc)}))
        raise UsageError(f"{args.file}: cannot audit: {exc}") from exc
    print(json.dumps(report.to_json(), indent=1) if args.json else render(report))
    return report.exit_status


def _arrays(paths: list[Path] | None, option: str, need_y: bool) -> tuple:
    from harness.metadata import load_array

    if not paths:
        return None, None
    if len(paths) > 2 or (need_y and len(paths) != 2):
        raise UsageError(f"{option} takes X.npy{' Y.npy' if need_y else ' [Y.npy]'}, "
                         f"got {len(paths)} files")
    X = load_array(paths[0])
    return X, load_array(paths[1]) if len(paths) == 2 else None


def cmd_save(args) -> int:
    from harness import metadata

    X, y = _arrays(args.train_data, "--train-data", need_y=False)
    if args.cv and y is None:
        raise UsageError("--cv needs --train-data X.npy Y.npy")
    est, X_eval, script, recipe = metadata.fitted_from_source(args.source, args.seed)
    # Without data the recipe that regenerates it (zoo or factory) is the reference.
    reference = args.data_ref or (recipe if X is None else None)
    try:
        sidecar = metadata.save(est, args.out, args.format, X_sample=X_eval, X_train=X,
                                y_train=y, data_reference=reference,
                                script=args.script or script, cv_folds=args.cv,
                                cv_score=args.cv_score, scoring=args.scoring)
    except Unsupported as exc:
        print(f"persistbench: {args.format} cannot save this model: {exc}", file=sys.stderr)
        return 1
    print(f"model: {args.out} ({sidecar['model']['bytes']} bytes, {args.format})")
    print(f"sidecar: {metadata.sidecar_path(args.out)}")
    return 0


def cmd_check(args) -> int:
    import json

    from harness import metadata

    data = tuple(args.data) if args.data else None
    found = metadata.check(args.model, args.sidecar, data, args.tolerance)
    if args.json:
        print(json.dumps(metadata.findings_json(found), indent=1, default=str))
    else:
        for finding in found:
            print(finding.line())
    return 1 if any(f.fatal and not f.matches for f in found) else 0


def cmd_profile(args) -> int:
    from harness.machine import fingerprint
    from harness.profile import default_dir, profile
    from harness.units import human_bytes

    machine_id = fingerprint(REPORTS_DIR)["machine_id"]
    output = args.output or default_dir(REPORTS_DIR, machine_id)
    info = profile(args.model, args.size, args.format, args.phase, output, args.timeout,
                   machine_id)
    if info["status"] != "ok":
        print(f"persistbench: no profile: {info['status']}: {info.get('reason')}",
              file=sys.stderr)
        return 1
    print(f"peak memory of the {args.phase} (memray): {human_bytes(info['peak_memory_bytes'])} "
          f"({info['peak_memory_bytes']} bytes, {info['total_allocations']} allocations)")
    print(f"flamegraph: {output / info['flamegraph']}")
    print(f"capture: {output / info['capture']}")
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="persistbench",
                    description="Measure how to persist a scikit-learn model on this machine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("list", help="models, sizes, formats, experiments, profiles")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="measure cells and write a results file")
    p.add_argument("--profile", choices=list(PROFILES), default="quick")
    p.add_argument("--models", help="comma-separated zoo models (default: all)")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--sizes", help="comma-separated sizes (default: from the profile)")
    p.add_argument("--experiments", help="comma-separated experiments (default: roundtrip)")
    p.add_argument("--repeat", type=_positive(int), help="samples per timed phase")
    p.add_argument("--runs", type=_positive(int), default=1, metavar="K",
                   help="independent passes over every cell, interleaved (default 1); "
                        "compare needs 2 or more per side to judge timings")
    p.add_argument("--timeout", type=_positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--starts", type=_count,
                   help="fresh interpreters per round-trip cell and pass for the "
                        "server-start measures (default: 1 in the quick profile, else 3; "
                        "0 skips them)")
    p.add_argument("--workers", type=_positive(int),
                   help="fresh processes a round-trip cell's dump and load samples are "
                        "spread over, each with its own warm-up (default 1)")
    p.add_argument("--model", help="your own model: package.module:factory returning "
                                   "(fitted_estimator, X_eval)")
    p.add_argument("--model-file", type=Path, metavar="FILE",
                   help="your own saved model (pickle, joblib, cloudpickle, skops), audited "
                        "before a child process loads it")
    _model_file_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=_positive(int), default=4,
                   help="serving processes of the sharing experiment (default 4)")
    p.add_argument("--output", type=Path, help="results file (default results/run-<time>.json)")
    p.add_argument("--resume", action="store_true", help="skip cells already in --output")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.add_argument("--only", action="store_true",
                   help="report this run alone (default: every results file of this machine "
                        "in the output's folder, newest cell wins)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("advise", help="measure every format on your own model file and print "
                                      "the verdict for it")
    p.add_argument("file", type=Path, metavar="MODEL_FILE",
                   help="a model saved with pickle, joblib (any codec), cloudpickle or skops")
    _model_file_options(p)
    p.add_argument("--full", action="store_true",
                   help="also the sharing, inference and footprint experiments")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--repeat", type=_positive(int), help="samples per timed phase (default 5)")
    p.add_argument("--timeout", type=_positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of synthesized rows")
    p.add_argument("--processes", type=_positive(int), default=4,
                   help="serving processes of the sharing experiment (default 4)")
    p.add_argument("--output", type=Path, help="results file (default results/run-<time>.json)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.set_defaults(func=cmd_advise)

    p = sub.add_parser("report", help="HTML report per machine (or Markdown) from results")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS.json")
    p.add_argument("--output", type=Path, help=f"report folder (default {REPORTS_DIR}/)")
    p.add_argument("--format", choices=("html", "md"), default="html",
                   help="html: write DIR/<machine>/index.html; md: print a Markdown summary")
    p.add_argument("--only", action="store_true",
                   help="the files named alone (default: with every other results file of "
                        "the same machine in their folders, newest cell wins)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="B/A per cell and measure between runs, with a "
                                       "noise-aware verdict (exit 1 on regression if asked)")
    p.add_argument("results", nargs="*", type=Path, metavar="RESULTS.json",
                   help="A.json (the baseline) then one or more B.json")
    p.add_argument("--aa", type=Path, metavar="RESULTS.json",
                   help="self-check: compare the first half of one run's passes with the "
                        "second half (needs --runs 4 or more) and report the false alarms")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML page")
    p.add_argument("--threshold", type=_positive(float), default=10.0, metavar="PCT",
                   help="practical threshold for times (default 10)")
    p.add_argument("--memory-threshold", type=_positive(float), default=5.0, metavar="PCT",
                   help="practical threshold for peak memory (default 5)")
    p.add_argument("--alpha", type=_fraction, default=0.05,
                   help="false-discovery rate across all measures compared (default 0.05)")
    p.add_argument("--absolute", action="store_true",
                   help="judge raw ratios, not relative to each family's common factor "
                        "(for a quiet, dedicated machine)")
    p.add_argument("--fail-on-regression", type=_positive(float), nargs="?", const=0.0,
                   metavar="PCT", help="exit 1 when a measure is flagged worse (and, with "
                                       "PCT, worse by more than PCT percent)")
    p.add_argument("--all", action="store_true", help="print every measure, not only changes")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("compat", help="save with one scikit-learn version, load with another")
    p.add_argument("--sklearn", help="comma-separated versions, X.Y (latest patch) or X.Y.Z "
                                     "(default: installed and the two previous minor releases)")
    p.add_argument("--models", help="comma-separated zoo models (default: all, size small)")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--timeout", type=_positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path,
                   help="results file (default results/compat-<time>.json)")
    p.add_argument("--resume", action="store_true", help="skip cells already in --output")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the cached environments of the listed versions")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.set_defaults(func=cmd_compat)

    p = sub.add_parser("save", help="save a model with a metadata sidecar (MODEL.meta.json)")
    p.add_argument("source", metavar="MODEL_SOURCE",
                   help="zoo model as name[@size] (e.g. logreg@small) or package.module:factory")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--out", required=True, type=Path, help="model file to write")
    p.add_argument("--train-data", nargs="+", type=Path, metavar="NPY",
                   help="X.npy [Y.npy]: the training data to fingerprint (and score on)")
    p.add_argument("--data-ref", help="a reference to an immutable snapshot of the training data")
    p.add_argument("--script", type=Path,
                   help="source that produced the model (default: the zoo or factory module)")
    score = p.add_mutually_exclusive_group()
    score.add_argument("--cv", type=_positive(int), metavar="FOLDS",
                       help="compute a cross-validation score on --train-data")
    score.add_argument("--cv-score", type=float, help="a cross-validation score you computed")
    p.add_argument("--scoring", help="scikit-learn scorer name (default: the estimator's score)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("check", help="compare a model's sidecar with this environment "
                                     "(exit 1 on a scikit-learn version or score mismatch)")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--sidecar", type=Path, help="default: MODEL.meta.json")
    p.add_argument("--data", nargs=2, type=Path, metavar=("X.npy", "Y.npy"),
                   help="re-score the model on this data (in a child process)")
    p.add_argument("--tolerance", type=_positive(float), default=0.05,
                   help="allowed distance from the saved cross-validation score (default 0.05)")
    p.add_argument("--json", action="store_true", help="findings as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("audit", help="what loading FILE would import and call, without "
                                     "loading it (exit 0 clean, 1 flagged, 2 not a model "
                                     "file the audit understands)")
    p.add_argument("file", type=Path, metavar="FILE", nargs="?")
    p.add_argument("--regenerate-allowlist", action="store_true",
                   help="rewrite the allow-list from what the installed scikit-learn, numpy "
                        "and scipy pickle (about a minute)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--trust", metavar="MODULES",
                   help="comma-separated module prefixes of your own code to accept")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("profile", help="memray capture, flamegraph and peak of one cell phase")
    p.add_argument("--model", required=True, help="zoo model or package.module:factory")
    p.add_argument("--size", default="small", help="model size (default small)")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--phase", required=True, choices=["dump", "load"])
    p.add_argument("--output", type=Path,
                   help="directory (default reports/<machine-id>/profiles)")
    p.add_argument("--timeout", type=_positive(float), default=600.0,
                   help="seconds before the profiled child is killed (default 600)")
    p.set_defaults(func=cmd_profile)
    return parser


def _model_file_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, metavar="X.npy|TABLE.csv|TABLE.parquet",
                   help="evaluation rows for the model file (default: synthesized from what "
                        "the fitted estimator declares, when that is enough)")
    p.add_argument("--trust", nargs="+", action="extend", metavar="MODULE",
                   help="accept these flagged modules (exactly those the audit flags)")


def main(argv: list[str] | None = None) -> int:
    if sys.platform == "win32":
        print("persistbench: error: Windows is not supported: per-phase peak memory, page-cache"
              " eviction and forked workers have no equivalent there; run it under WSL 2 "
              "(Linux) or on macOS", file=sys.stderr)
        return 2
    if PLUGIN_ERROR:
        print(f"persistbench: error: {PLUGIN_ERROR}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ResultsError) as exc:
        print(f"persistbench: error: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:  # the audit flagged a model file: its findings, never loaded
        print(exc, file=sys.stderr)
        return 1
