"""A test-only format whose loads are slowed down on purpose, to check that `compare`
catches a real change.

Imported through `PERSISTBENCH_FORMATS=tests.planted_format`, it registers `planted`:
pickle protocol 5, except that with `PERSISTBENCH_PLANTED_SLOWDOWN=1.5` every load spins
for half as long again as the load itself took (file reading included), in the cells and in
freshly started servers alike. Unset, it loads exactly as pickle-p5 does. Nothing here
ships to users.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from persistbench.sources.formats import FORMATS, register

ENV = "PERSISTBENCH_PLANTED_SLOWDOWN"
BASE = FORMATS["pickle-p5"]


def _stretched_load(path: Path, prepared: dict) -> Any:
    start = time.perf_counter()
    obj = BASE.load(path, prepared)
    factor = float(os.environ.get(ENV) or 1.0)
    if factor > 1.0:  # spin, not sleep: a sleep this short overshoots on a busy machine
        now = time.perf_counter()
        deadline = now + (factor - 1.0) * (now - start)
        while time.perf_counter() < deadline:
            pass
    return obj


PLANTED = register(dataclasses.replace(BASE, name="planted", suffix=".planted.pkl",
                                       load_fn=_stretched_load))
