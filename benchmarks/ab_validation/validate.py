"""The A/B's own check: sessions of `persistbench ab` between paced environments, and what
each flagged.

- `aa`: the same environment (factor 0) on both sides: every flag is a false alarm;
- `5`, `10`, ...: side B's pickle.load and joblib.load made that many per cent slower
  (`pace.py`), side A the same wrapper waiting for nothing. The touched measures are the
  load times (warm `load_s`, cold `load_cold_s`) of the formats that load through those
  functions; a flag anywhere else is a false alarm.

    python -m benchmarks.ab_validation.validate --sessions aa,aa,aa,5,10 [--rounds 20]
        [--models logreg,random_forest,kneighbors] [--out DIR] [-- more ab options]

Prints per session its wall time, the machine's load average before and after, and the
counts; each session's results file and terminal output are kept in DIR.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.ab_validation.sides import base_environment, paced
from persistbench.report.ab import analyse
from persistbench.results.schema import read

TOUCHED_FORMATS = ("pickle", "pickle-p5", "joblib", "joblib-mmap", "joblib-zlib3",
                   "joblib-lz4", "joblib-lzma", "cloudpickle")
TOUCHED_KEYS = ("load_s", "load_cold_s")


def counts(data: dict, slowed: bool) -> dict[str, object]:
    """Flags on touched measures per key (out of how many), and flags elsewhere."""
    comp = analyse(data)
    cells = {c["cell_id"]: c["format"] for c in data["cells"]}
    out: dict[str, object] = {}
    for key in TOUCHED_KEYS:
        rows = [r for r in comp.rows if r.key == key and cells[r.cell_id] in TOUCHED_FORMATS]
        out[key] = (sum(r.verdict == "worse" for r in rows), len(rows))
    out["false"] = [f"{r.cell_id} {r.key} {r.verdict} x{r.ratio:.3f}" for r in comp.flagged()
                    if not (slowed and r.key in TOUCHED_KEYS
                            and cells[r.cell_id] in TOUCHED_FORMATS and r.verdict == "worse")]
    out["power"] = {p.family: round(p.detectable, 3) for p in comp.power}
    return out


def summary_line(data: dict, session: str) -> str:
    found = counts(data, session != "aa")
    return (", ".join(f"{key} flagged {found[key][0]}/{found[key][1]}" for key in TOUCHED_KEYS)
            + f"; elsewhere {len(found['false'])}; could detect {found['power']}"
            + "".join(f"\n     flagged elsewhere: {flag}" for flag in found["false"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="aa,aa,aa,5,10")
    parser.add_argument("--models", default="logreg,random_forest,kneighbors")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("ab-validation"))
    parser.add_argument("--recount", action="store_true",
                        help="count again what the sessions in --out found, measuring nothing")
    parser.add_argument("extra", nargs="*", help="more `persistbench ab` options, after --")
    args = parser.parse_args()
    if args.recount:
        for output in sorted(args.out.glob("*.json")):
            session = output.stem.split("-", 1)[1]
            print(f"{output.stem}: {summary_line(read(output), session)}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    base = base_environment()
    envs: dict[str, Path] = {}
    summary = []
    for i, session in enumerate(args.sessions.split(",")):
        factor = 0.0 if session == "aa" else float(session) / 100
        for f in {0.0, factor}:
            if f not in envs:
                envs[f] = paced(base, f, args.out / "envs")
        output = args.out / f"{i + 1}-{session}.json"
        output.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "persistbench", "ab", "--a", str(envs[0.0]), "--b",
               str(envs[factor]), "--models", args.models, "--output", str(output), "--all",
               *(["--rounds", str(args.rounds)] if args.rounds else []), *args.extra]
        load = os.getloadavg()
        start = time.monotonic()
        with open(args.out / f"{i + 1}-{session}.log", "w") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        wall = time.monotonic() - start
        line = (f"{session:>3}: {wall / 60:.1f} min, load {load[0]:.1f} -> "
                f"{os.getloadavg()[0]:.1f}; " + summary_line(read(output), session))
        print(line, flush=True)
        summary.append(line)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
