"""Caps on the audit's own work: a file that needs more is a finding, never a hang.

The defaults leave room for every benign model the corpus builds (a vocabulary of a
million words is about 3 M opcodes) and stop the known bombs early: 100 M opcodes in a
200 kB gzip, a 10 MB run of MARKs, a zip whose `schema.json` inflates to 1 GB.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import psutil


class BudgetExceeded(Exception):
    """The file needs more than the audit allows itself; the message names the budget."""


@dataclass
class Budget:
    opcodes: int = 20_000_000
    memo: int = 5_000_000
    nesting: int = 1_000  # MARKs open at once, nested pickles
    decompressed_bytes: int = 8 << 30
    archive_members: int = 10_000
    schema_bytes: int = 32 << 20  # skops schema.json
    schema_values: int = 3_000_000  # its values (commas and containers), before parsing
    onnx_bytes: int = 256 << 20  # an ONNX file is parsed whole
    seconds: float = 20.0  # leaves the load stage time within the audit's 28 s
    rss_bytes: int = 1 << 30  # growth of resident memory while auditing
    started: float = field(default_factory=time.monotonic)
    rss_at_start: int = field(default_factory=lambda: psutil.Process().memory_info().rss)

    @classmethod
    def unbounded(cls) -> Budget:
        """For the harness's own pickles (listing a model's modules), never for a file."""
        return cls(**{f: (math.inf if f == "seconds" else 2**62) for f in cls.__dataclass_fields__
                      if f not in ("started", "rss_at_start")})

    def check_time_and_memory(self, memory: bool = True) -> None:
        """Called every thousand steps or so: wall time, and (when `memory`, less often: it
        costs a system call) resident memory.

        Memory counts what the process gained since the audit began, not its whole RSS: a
        child forked from the preloaded forkserver starts with hundreds of MB resident,
        a test session with more, and either would leave a benign file over budget."""
        elapsed = time.monotonic() - self.started
        if elapsed > self.seconds:
            raise BudgetExceeded(f"too large to audit within {self.seconds:g} s")
        if not memory:
            return
        rss = psutil.Process().memory_info().rss
        if rss - self.rss_at_start > self.rss_bytes:
            raise BudgetExceeded(f"too large to audit within {self.rss_bytes >> 20} MiB "
                                 "of memory")

    def exceed(self, what: str, limit: int) -> BudgetExceeded:
        return BudgetExceeded(f"too large to audit within {limit:,} {what}")
