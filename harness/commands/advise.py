"""`persistbench advise FILE`: which way to persist *this* model, measured on *this* machine.

The flow (`persistbench.schedule.advice`, shared with `persistbench.advise` in Python): audit
the file and refuse it unless it is clean or explicitly trusted (nothing is loaded), register
it as a model source, have a child process load it and build evaluation rows into the model
cache (so a model that needs `--data` is told so before anything is measured), then the usual
runner measures every format on it into the usual results file, and the answer is printed as
a verdict table for that one model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from persistbench.commands.options import (
    measure_then_report,
    model_file_options,
    positive,
    refuse_overwrite,
    trusted,
)
from persistbench.schedule.advice import LoadFailed, model_source, plan, run_advice
from persistbench.schedule.planning import default_output, names, writable_file
from persistbench.schedule.profiles import PROFILES
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import UsageError

# --------------------------------------------------------------------- interim verdict

def verdict_rows(data: dict, model: str) -> list[dict]:
    """One row per format from this model's roundtrip cells: the measures a choice rests on."""
    rows = []
    for cell in data["cells"]:
        if cell["model"] != model or cell["experiment"] != "roundtrip":
            continue
        traits = cell.get("format_traits") or {}
        rows.append({
            "format": cell["format"], "status": cell["status"],
            "reason": cell.get("reason"), "file_bytes": cell.get("file_bytes"),
            "dump_s": (cell.get("dump_s") or {}).get("median"),
            "load_s": (cell.get("load_s") or {}).get("median"),
            "load_cold_s": (cell.get("load_cold_s") or {}).get("median"),
            "load_peak_rss_bytes": cell.get("load_peak_rss_bytes"),
            "roundtrip_equal": cell.get("roundtrip_equal"),
            "executes_code_on_load": traits.get("executes_code_on_load"),
        })
    return rows


def print_verdict(data: dict, model: str, console=None) -> None:
    """The model's formats side by side, then the verdict table the report opens with."""
    from rich.console import Console
    from rich.table import Table

    from persistbench.results.units import human_bytes, human_seconds

    console = console or Console(width=None if Console().is_terminal else 160)
    rows = verdict_rows(data, model)
    table = Table("format", "status", "file", "load", "cold load", "load +RSS", "dump",
                  "same predictions", "runs code on load", title=f"verdict: {model}")
    for r in rows:
        ok = r["status"] == "ok"
        equal = r["roundtrip_equal"]
        table.add_row(
            r["format"], r["status"] if ok else f"[red]{r['status']}[/red]",
            human_bytes(r["file_bytes"]), human_seconds(r["load_s"]),
            human_seconds(r["load_cold_s"]), human_bytes(r["load_peak_rss_bytes"]),
            human_seconds(r["dump_s"]),
            "-" if equal is None else ("yes" if equal else "[red]no[/red]"),
            "-" if r["executes_code_on_load"] is None else
            ("yes" if r["executes_code_on_load"] else "no"))
    console.print(table)
    from persistbench.report.verdict import render_terminal, verdict

    render_terminal([r for r in verdict(data["cells"]) if r.model == model], console,
                    title=f"verdict: {model} (the report opens with the same table)")
    for cell in data["cells"]:
        if cell["model"] == model and cell["status"] != "ok":
            console.print(f"[yellow]{cell['experiment']} {cell['format']}[/yellow] "
                          f"{cell['status']}: {cell['reason']}", highlight=False,
                          soft_wrap=True)


def add_parser(sub) -> None:
    p = sub.add_parser("advise", help="measure every format on your own model file and print "
                                      "the verdict for it")
    p.add_argument("file", type=Path, metavar="MODEL_FILE",
                   help="a model saved with pickle, joblib (any codec), cloudpickle or skops")
    model_file_options(p)
    p.add_argument("--full", action="store_true",
                   help="also the sharing, inference and footprint experiments")
    p.add_argument("--formats", help="comma-separated formats (default: all)")
    p.add_argument("--repeat", type=positive(int), help="samples per timed phase (default 5)")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds per cell before it is killed (default 600)")
    p.add_argument("--seed", type=int, default=0, help="seed of synthesized rows")
    p.add_argument("--processes", type=positive(int), default=4,
                   help="serving processes of the sharing experiment (default 4)")
    p.add_argument("--output", type=Path, help="results file (default results/run-<time>.json)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the machine bandwidth calibration (a few seconds)")
    p.set_defaults(func=execute)


def execute(args) -> int:
    from persistbench.schedule.runner import RunOptions

    entry = model_source(args.file, args.data, trusted(args.trust), args.unconfined)
    formats = names(args.formats, list(FORMATS), "format") or list(FORMATS)
    options = {"repeat": args.repeat or PROFILES["quick"]["repeat"], "seed": args.seed,
               "processes": args.processes, "workers": PROFILES["quick"]["workers"]}
    cells = plan(entry, formats, args.full, options)
    output = args.output or default_output()
    refuse_overwrite(output, resume=False)
    writable_file(output, "--output")
    run_options = RunOptions(output=output, timeout_s=args.timeout, profile="advise",
                             seed=args.seed, argv=sys.argv, calibrate=not args.no_calibrate)

    def measure_and_print() -> None:
        data = run_advice(entry, cells, run_options, output.parent)
        print_verdict(data, entry.name)

    try:
        return measure_then_report(output, measure_and_print)
    except LoadFailed as exc:
        if exc.bad_input:
            raise UsageError(f"{args.file}: {exc}") from None
        print(f"persistbench: error: {exc}", file=sys.stderr)
        return 1
