"""The A/B of one session, read from its results file: per cell and measure, B/A from the
pairs, the verdict, and per measure family what the evidence could have detected.

Times and peak memory are judged from their pairs (`paired`). A warm time (`CPU_JUDGED`) is
judged by the CPU time of its runs, recorded beside it: a run of a few milliseconds on a
busy machine waits for the CPU about as long as it runs, every run of a step alike, so the
step's fastest wall-clock run still holds a wait of its own, and that wait differs between
A's step and B's (sd 0.3-0.7 in log of a round's ratio for loads of 1-10 ms under load 4-9
here). The CPU time of the same runs leaves the wait out and keeps everything the code does,
in user or kernel mode. A cold load waits for the disk, which is its point: it stays judged
by its wall time. A peak-memory change under
`MEMORY_FLOOR_BYTES` is page-granularity noise and no change (the floor is added to both
sides, so 0 -> 4 kB is not "infinitely worse"). File sizes are deterministic: any change
is real and flagged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from persistbench.report.compare import MEMORY_FLOOR_BYTES
from persistbench.report.paired import Paired, detectable, judge_pairs, pairs_for, robust_sd
from persistbench.results.vocabulary import cpu_key

TIMES = ("load_s", "load_cold_s", "dump_s")
CPU_JUDGED = ("load_s", "dump_s")
MEMORY = ("load_peak_rss_bytes", "dump_peak_rss_bytes")
SIZES = ("file_bytes",)
TARGET = 1.05  # the change the power statement is about


@dataclass
class ABRow:
    cell_id: str
    key: str
    a: float  # median of A's samples, all pairs
    b: float
    pairs: int
    ratio: float  # B/A: exp(Hodges-Lehmann) for times and memory, exact for sizes
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    verdict: str = "same"
    note: str = ""

    @property
    def flag(self) -> str:
        return self.verdict if self.verdict in ("worse", "better") else ""


@dataclass
class Power:
    family: str
    pairs: int  # median pairs per cell
    sd: float  # robust sd of a pair's log ratio, median over the family's cells
    detectable: float  # ratio
    pairs_for_target: int | None


@dataclass
class ABComparison:
    sides: dict[str, dict]
    threshold: float
    memory_threshold: float
    alpha: float
    level: float = 0.95
    tested: int = 0
    rows: list[ABRow] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # cell, status, reason
    power: list[Power] = field(default_factory=list)

    def flagged(self) -> list[ABRow]:
        return [r for r in self.rows if r.flag]

    def counts(self) -> dict[str, int]:
        out = {"worse": 0, "better": 0, "same": 0, "inconclusive": 0}
        for r in self.rows:
            out[r.verdict] += 1
        return out

    def regressions(self, pct: float = 0.0) -> list[str]:
        return [f"{r.cell_id} {r.key}: {r.ratio - 1:+.1%}" for r in self.rows
                if r.verdict == "worse" and (r.ratio - 1) * 100 > pct]


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _step(value) -> float:
    """A step's figure: the fastest run of its series (a time), or its one number.

    Another process on the CPU only ever adds time to a run, and on a busy machine it does
    so to a run of a few milliseconds more often than not: in one session here (load 9, a
    busy loop on one of the 2 cores), the round-to-round sd of a 1.4 ms load's log ratio
    was 0.97 from its steps' medians and 0.09 from their fastest runs, 0.01-0.03 either
    way for loads under 0.5 ms. The fastest run is what the code costs when nothing
    interrupts it, and is compared with the other side's step taken just before or after."""
    return float(np.min(value)) if isinstance(value, list) else float(value)


def _logs(pairs: list[dict], key: str, offset: float) -> np.ndarray | None:
    """One log ratio per pair (round): the median over its steps of log(B_i / A_i), step i
    of A and of B having been taken one after the other (a step's time: its fastest run)."""
    out = []
    for pair in pairs:
        a, b = pair["a"].get(key), pair["b"].get(key)
        if not a or not b or len(a) != len(b) or not all(
                (isinstance(v, list) and v) or isinstance(v, int | float) for v in (*a, *b)):
            return None
        steps_a = np.array([_step(v) for v in a]) + offset
        steps_b = np.array([_step(v) for v in b]) + offset
        out.append(float(np.median(np.log(steps_b) - np.log(steps_a))))
    return np.asarray(out)


def judged_key(pairs: list[dict], key: str) -> str:
    """The key a measure is judged by: a warm time's CPU twin when every pair has it on
    both sides (older files have none), else the measure itself."""
    twin = cpu_key(key)
    if key in CPU_JUDGED and all(pair[s].get(twin) for pair in pairs for s in ("a", "b")):
        return twin
    return key


def _everything(pairs: list[dict], side: str, key: str) -> list[float]:
    """Every sample of a side: a time's series flattened, older files' one number a step."""
    return [x for pair in pairs for v in pair[side].get(key, [])
            for x in (v if isinstance(v, list) else [v])]


def analyse(data: dict, threshold_pct: float = 1.0, memory_threshold_pct: float = 5.0,
            alpha: float = 0.05) -> ABComparison:
    ab = data["run"]["ab"]
    comp = ABComparison(ab["sides"], threshold_pct, memory_threshold_pct, alpha)
    judged: list[tuple[ABRow, Paired]] = []
    for cell in data["cells"]:
        if cell["status"] != "ok":
            comp.failed.append((cell["cell_id"], cell["status"], cell.get("reason") or ""))
        pairs = cell.get("pairs", [])
        if not pairs:
            continue
        for key in (*TIMES, *MEMORY, *SIZES):
            by = judged_key(pairs, key)
            a, b = _everything(pairs, "a", by), _everything(pairs, "b", by)
            if not a or not b:
                continue
            row = ABRow(cell["cell_id"], key, _median(a), _median(b), len(pairs),
                        _median(b) / _median(a) if _median(a) else math.inf)
            if by != key:
                row.note = "CPU time"
            comp.rows.append(row)
            if key in SIZES:
                row.note = "exact"
                row.verdict = "same" if set(a) == set(b) else (
                    "worse" if row.b > row.a else "better")
                continue
            memory = key in MEMORY
            offset = MEMORY_FLOOR_BYTES if memory else 0.0
            logs = _logs(pairs, by, offset)
            if logs is None:
                row.verdict, row.note = "inconclusive", "missing in some pairs"
                continue
            pct = memory_threshold_pct if memory else threshold_pct
            if memory and abs(row.b - row.a) < MEMORY_FLOOR_BYTES:
                row.note = f"under {MEMORY_FLOOR_BYTES // 2**20} MiB"
                continue
            judged.append((row, Paired(logs, math.log1p(pct / 100))))
    comp.level = judge_pairs([p for _, p in judged], alpha)
    comp.tested = sum(p.p_value is not None for _, p in judged)
    for row, p in judged:
        row.ratio = math.exp(p.estimate)
        row.low = math.exp(p.low) if p.low is not None else None
        row.high = math.exp(p.high) if p.high is not None else None
        row.p_value, row.verdict = p.p_value, p.verdict
        row.note = "; ".join(n for n in (row.note, p.reason) if n)
    comp.power = _power(judged, comp.level, threshold_pct, memory_threshold_pct)
    return comp


def _power(judged: list[tuple[ABRow, Paired]], level: float, pct: float,
           memory_pct: float) -> list[Power]:
    """Per family: the smallest change this session could flag, and the pairs 5 % needs."""
    families: dict[str, list[Paired]] = {}
    for row, p in judged:
        families.setdefault(row.key, []).append(p)
    out = []
    for family, members in families.items():
        sd = float(np.median([robust_sd(p.logs) for p in members]))
        n = int(np.median([len(p.logs) for p in members]))
        limit = math.log1p((memory_pct if family in MEMORY else pct) / 100)
        out.append(Power(family, n, sd, detectable(sd, n, level, limit),
                         pairs_for(TARGET, sd, level, limit)))
    return out
