"""`persistbench compare`: B/A per cell and measure between results files, and the gate."""

from __future__ import annotations

import sys
from pathlib import Path

from persistbench.commands.options import fraction, positive
from persistbench.schedule.planning import writable_file
from persistbench.sources.models import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="B/A per cell and measure between runs, with a "
                                       "noise-aware verdict (exit 1 on regression if asked)")
    p.add_argument("results", nargs="*", type=Path, metavar="RESULTS.json",
                   help="A.json (the baseline) then one or more B.json")
    p.add_argument("--aa", type=Path, metavar="RESULTS.json",
                   help="self-check: compare the first half of one run's passes with the "
                        "second half (needs --runs 4 or more) and report the false alarms")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML page")
    p.add_argument("--threshold", type=positive(float), default=10.0, metavar="PCT",
                   help="practical threshold for times (default 10)")
    p.add_argument("--memory-threshold", type=positive(float), default=5.0, metavar="PCT",
                   help="practical threshold for peak memory (default 5)")
    p.add_argument("--alpha", type=fraction, default=0.05,
                   help="false-discovery rate across all measures compared (default 0.05)")
    p.add_argument("--absolute", action="store_true",
                   help="judge raw ratios, not relative to each family's common factor "
                        "(for a quiet, dedicated machine)")
    p.add_argument("--fail-on-regression", type=positive(float), nargs="?", const=0.0,
                   metavar="PCT", help="exit 1 when a measure is flagged worse (and, with "
                                       "PCT, worse by more than PCT percent)")
    p.add_argument("--all", action="store_true",
                   help="judge and print every measure (default: the gate judges the headline "
                        "measures: load, cold load, dump, server start, peak memory, file "
                        "size; prints changes and unstable measures)")
    p.set_defaults(func=execute)

def execute(args) -> int:
    from persistbench.report.compare import compare
    from persistbench.report.compare_output import print_comparisons, write_html
    from persistbench.results.schema import read

    if args.html:
        writable_file(args.html, "--html")
    if args.aa is not None:
        from persistbench.results.passes import split_passes

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
                           args.alpha, drift=not args.absolute, every_measure=args.all)
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
