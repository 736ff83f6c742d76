"""`persistbench report`: HTML pages per machine (or a Markdown summary) from results files."""

from __future__ import annotations

from pathlib import Path

from persistbench.commands.options import REPORTS_DIR
from persistbench.schedule.planning import writable_dir
from persistbench.sources.models import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="HTML report per machine (or Markdown) from results")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS.json")
    p.add_argument("--output", type=Path, help=f"report folder (default {REPORTS_DIR}/)")
    p.add_argument("--format", choices=("html", "md"), default="html",
                   help="html: write DIR/<machine>/index.html; md: print a Markdown summary")
    p.add_argument("--only", action="store_true",
                   help="the files named alone (default: with every other results file of "
                        "the same machine in their folders, newest cell wins)")
    p.set_defaults(func=execute)

def execute(args) -> int:
    from persistbench.report.data import load, with_siblings

    results = args.results if args.only else with_siblings(args.results)
    if args.format == "md":
        if args.output is not None:
            raise UsageError("--output applies to --format html; Markdown is printed")
        from persistbench.report.markdown import render_all

        print(render_all(load(results)), end="")
        return 0
    from persistbench.sources.extras import missing

    problem = missing("report")
    if problem:
        raise UsageError(f"the HTML report needs {problem}; `--format md` works without")
    from persistbench.report.html import write_reports

    output = args.output or REPORTS_DIR
    writable_dir(output, "--output")
    for page in write_reports(results, output):
        print(f"report: {page}")
    print(f"index: {output / 'index.html'}")
    return 0
