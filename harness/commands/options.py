"""What several commands share: argument types, output checks, and the measure-then-report
ending of a measuring command (Ctrl-C keeps what was measured)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from persistbench.sources.models import UsageError

REPORTS_DIR = Path("reports")


def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)

def precision(text: str) -> float:
    """`--precision 5%` (or 0.05): the 95 % interval's half-width each measure samples to."""
    from persistbench.results.precision import parse_precision

    try:
        return parse_precision(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse

def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie between 0 and 1")
    return value

def trusted(values: list[str] | None) -> tuple[str, ...]:
    """--trust a b, --trust a,b and repeated --trust all mean the same list."""
    return tuple(dict.fromkeys(n.strip() for v in values or () for n in v.split(",")
                               if n.strip()))

def refuse_overwrite(output: Path, resume: bool) -> None:
    if output.exists() and not resume:
        raise UsageError(f"{output} exists; pass --resume to continue it or choose another "
                         "--output")

def latest_output() -> Path:
    found = sorted(Path("results").glob("run-*.json"))
    if not found:
        raise UsageError("--resume without --output: no results/run-*.json to resume; "
                         "pass --output FILE")
    return found[-1]

def measure_then_report(output: Path, measure_and_print, only: bool = False) -> int:
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
    return report_after_run(output, only)

def report_after_run(output: Path, only: bool = False) -> int:
    """The machine's answer as a page a person can open; the results file is already safe.

    The page gathers every results file of this machine beside `output` (newest cell wins),
    so a serving run adds to the round trips measured earlier; `only` shows this run alone.
    """
    from persistbench.sources.extras import missing

    problem = missing("report")
    if problem:  # measuring needs no report libraries; say how to get the page later
        print(f"persistbench: no HTML report: {problem}; then `persistbench report {output}`",
              file=sys.stderr)
        return 0
    try:
        from persistbench.report.data import with_siblings
        from persistbench.report.html import write_reports

        page = write_reports([output] if only else with_siblings([output]), REPORTS_DIR)[0]
    except Exception as exc:  # a rendering bug must not hide that the results are saved
        print(f"persistbench: error: the report could not be written ({exc}); the results "
              f"are in {output}: retry with `persistbench report {output}`", file=sys.stderr)
        return 1
    print(f"report: {page}")
    return 0

def model_file_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, metavar="X.npy|TABLE.csv|TABLE.parquet",
                   help="evaluation rows for the model file (default: synthesized from what "
                        "the fitted estimator declares, when that is enough)")
    p.add_argument("--trust", nargs="+", action="extend", metavar="MODULE",
                   help="accept these flagged modules (exactly those the audit flags)")
    p.add_argument("--unconfined", action="store_true",
                   help="where this machine cannot confine the process that loads the file "
                        "(no seccomp or Landlock), load it anyway, unconfined")
