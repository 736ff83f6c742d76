"""The two-run gate's own check, on runs of the same code: `compare --fail-on-regression`
between pairs of them (every flag a false alarm), then the same pairs with one format's load
figures in run B multiplied by a known factor, wall and CPU time alike (every touched load
timing should be flagged),
and which measures the rule set aside as unstable.

    python -m benchmarks.ab_validation.gate RUN1.json RUN2.json … [--pairs 5]
        [--format pickle-p5] [--factors 2,1.25]

Pairs are (1,2), (3,4), … then (1,3), (2,4), … until --pairs. Scaling a results file's
figures is how a real slower load shows in one (every sample, pass and summary scaled), with
the machine's noise left as it was measured.
"""

from __future__ import annotations

import argparse
import copy
import itertools
from pathlib import Path

from persistbench.report.compare import compare
from persistbench.results.schema import read
from persistbench.results.vocabulary import cpu_key

LOADS = ("load_s", "load_cold_s")
# A slower load costs that much more CPU time too (the gate judges warm loads by it).
SCALED = (*LOADS, *(cpu_key(key) for key in LOADS))


def scaled(data: dict, fmt: str, factor: float) -> dict:
    """A copy of a run whose `fmt` cells' load timings are `factor` times what was measured."""
    out = copy.deepcopy(data)
    for cell in out["cells"]:
        if cell.get("format") != fmt:
            continue
        for key in SCALED:
            stats = cell.get(key)
            if not isinstance(stats, dict):
                continue
            for field in ("min", "median", "max"):
                if stats.get(field) is not None:
                    stats[field] *= factor
            stats["samples"] = [v * factor for v in stats.get("samples", [])]
            stats["passes"] = [[v * factor for v in p] for p in stats.get("passes", [])]
            samples = cell.get(f"{key}_samples")
            if isinstance(samples, list):
                cell[f"{key}_samples"] = [v * factor for v in samples]
    return out


def pairs(n: int, wanted: int) -> list[tuple[int, int]]:
    adjacent = [(i, i + 1) for i in range(0, n - 1, 2)]
    rest = [p for p in itertools.combinations(range(n), 2) if p not in adjacent]
    return (adjacent + rest)[:wanted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--format", default="pickle-p5")
    parser.add_argument("--factors", default="2,1.25")
    args = parser.parse_args()
    runs = [read(p) for p in args.runs]
    factors = [float(f) for f in args.factors.split(",")]
    for i, j in pairs(len(runs), args.pairs):
        a, b = runs[i], runs[j]
        comp = compare(a, b)
        unstable = [f"{r.cell_id} {r.key}" for r in comp.rows if r.verdict == "unstable"]
        every = compare(a, b, every_measure=True)
        predicts = [r for r in every.rows if r.key == "first_predict_s"]
        line = (f"runs {i + 1},{j + 1}: gate {'fails' if comp.regressions() else 'passes'}"
                f" ({len(comp.flagged())} flagged of {len(comp.rows)}; "
                f"{len(unstable)} unstable); with --all "
                f"{'fails' if every.regressions() else 'passes'} "
                f"({len(every.flagged())} flagged of {len(every.rows)}, first_predict_s "
                f"unstable on {sum(r.verdict == 'unstable' for r in predicts)}/{len(predicts)}"
                f" cells)")
        for factor in factors:
            planted = compare(a, scaled(b, args.format, factor))
            touched = [r for r in planted.rows if r.key in LOADS
                       and r.cell_id.split("/")[-1] == args.format and r.verdict != "unstable"]
            caught = sum(r.flag == "worse" for r in touched)
            others = [r for r in planted.flagged() if r not in touched]
            line += (f"; x{factor:g} {args.format} loads flagged {caught}/{len(touched)}"
                     f" (elsewhere {len(others)})")
        print(line, flush=True)
        for flag in comp.regressions():
            print(f"    false alarm: {flag}")
        for flag in every.regressions():
            print(f"    false alarm with --all: {flag}")
        for name in unstable:
            print(f"    unstable: {name}")


if __name__ == "__main__":
    main()
