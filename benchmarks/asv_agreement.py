"""Do the asv suite and the report rank formats alike? Each format's load time over
pickle-p5's, read from an asv results file and from a `persistbench run` results file, per
quick cell; the two ratios agree when their quotient is within [0.67, 1.5].

    python -m benchmarks.asv_agreement ASV_RESULTS.json RUN.json [--benchmark NAME]

`--benchmark` names the asv measure (default `Quantities.track_load_s`, the harness's
warm-repeated load as asv stores it; `RoundTrip.time_load` is asv's own hot loop). Cells whose
load, or pickle-p5's, is under 10 µs in the run are left out: there the timer's and the
process's own costs are of the same order as the load.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
from pathlib import Path

BASE = "pickle-p5"
LOW, HIGH = 0.67, 1.5
MIN_LOAD_S = 10e-6


def asv_values(path: Path, benchmark: str) -> dict[tuple[str, str, str], float]:
    """(model, size, format) -> the asv result of `benchmark` (None results left out)."""
    data = json.loads(path.read_text())
    name = next((k for k in data["results"] if k.endswith(benchmark)), None)
    if name is None:
        raise SystemExit(f"{path}: no result for {benchmark}; run it with "
                         f"`asv run --python=same --bench {benchmark}`")
    entry = dict(zip(data["result_columns"], data["results"][name], strict=False))
    params = [[ast.literal_eval(v) for v in values] for values in entry["params"]]
    found = {}
    combos = [(m, s, f) for m in params[0] for s in params[1] for f in params[2]]
    for combo, value in zip(combos, entry["result"], strict=True):
        if value is not None and value == value:  # asv writes NaN for a failed set
            found[combo] = float(value)
    return found


def run_values(path: Path) -> dict[tuple[str, str, str], float]:
    """(model, size, format) -> the median of `load_s` over the run's cells."""
    per: dict = {}
    for cell in json.loads(path.read_text())["cells"]:
        load = cell.get("load_s")
        if cell.get("status") == "ok" and isinstance(load, dict) and load.get("median"):
            per.setdefault((cell["model"], cell["size"], cell["format"]), []).append(
                load["median"])
    return {key: statistics.median(values) for key, values in per.items()}


def agreement(asv: dict, run: dict) -> list[tuple[tuple, float, float, bool]]:
    """Per cell measured by both with loads >= 10 µs: (cell, asv ratio, run ratio, agree)."""
    rows = []
    for key, load in sorted(run.items()):
        base = (key[0], key[1], BASE)
        if key[2] == BASE or base not in run or key not in asv or base not in asv:
            continue
        if load < MIN_LOAD_S or run[base] < MIN_LOAD_S:
            continue
        asv_ratio, run_ratio = asv[key] / asv[base], load / run[base]
        rows.append((key, asv_ratio, run_ratio, LOW <= asv_ratio / run_ratio <= HIGH))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("asv_results", type=Path, help="an asv results file "
                        "(.asv/results/<machine>/<commit>-<env>.json)")
    parser.add_argument("run_results", type=Path, help="a persistbench results file")
    parser.add_argument("--benchmark", default="Quantities.track_load_s")
    args = parser.parse_args()
    rows = agreement(asv_values(args.asv_results, args.benchmark),
                     run_values(args.run_results))
    print(f"| cell | asv {args.benchmark} / {BASE} | report load_s / {BASE} | quotient | agree |")
    print("|---|---|---|---|---|")
    for key, asv_ratio, run_ratio, ok in rows:
        print(f"| {'/'.join(key)} | {asv_ratio:.2f} | {run_ratio:.2f} | "
              f"{asv_ratio / run_ratio:.2f} | {'yes' if ok else 'no'} |")
    agree = sum(ok for *_, ok in rows)
    share = agree / len(rows) if rows else 0.0
    print(f"\n{agree} of {len(rows)} cells ({share:.0%}) agree within [{LOW}, {HIGH}]")


if __name__ == "__main__":
    main()
