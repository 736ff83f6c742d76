"""Run profiles (quick, default, large): which sizes, how many samples and server starts.

One table for every front: `persistbench run --profile`, and the asv and pytest-benchmark
suites, which read the profile from `PERSISTBENCH_PROFILE`. The variable is parsed as one of
the names below and anything else is refused, so a typo cannot silently fall back to
another profile (the trap of string flags such as "false" being truthy).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from persistbench.sources.models import UsageError

PROFILES: dict[str, dict] = {
    # A server start is a new interpreter importing scikit-learn: 1.5-2.5 s each, most of a
    # quick cell's time. quick starts one per cell and pass (`--runs 3` gives three).
    # `workers`: fresh processes a round trip's dump and load samples are spread over. One
    # process's timings move together (sd 0.12 in log between three workers of one pass),
    # but on a shared 2-core VM the drift between passes minutes apart is larger (sd 0.17-0.21
    # of a cell's pass median with one worker or three), so three workers bought no tighter
    # comparison and cost 40 % more time: one by default, `--workers 3` where the first-load
    # figure of several processes matters.
    # quick samples each timing until its median's 95 % interval is within ±10 % (at least
    # 6 samples), or a quarter second is spent on it (warm-ups and what runs between
    # samples, such as a cold load's eviction, included): 269 of 270 headline figures
    # within ±10 % on an idle machine here, in 52 s. A shared budget for the whole run
    # instead (`sampling_s`, below) ran out on this machine's noisy mid-size cells: 10 s
    # and 16 s left 33-48 % of the figures within ±10 % (load 1-3). `--repeat N` asks for
    # N samples instead.
    "quick": {"sizes": ["small"], "repeat": 5, "starts": 1, "workers": 1,
              "precision": 0.10, "budget_s": 0.25},
    # default: twice the cells (small and medium, whose loads take up to seconds) and
    # three server starts. Five samples of every timing took over 15 minutes (as last
    # measured) and
    # printed no interval; it now samples to ±10 % within 90 s of samples shared by the
    # whole run (`schedule.budget`): a stable cell stops early and leaves its share to the
    # cells after it. `budget_s` bounds a phase of a cell measured alone (the fronts).
    "default": {"sizes": ["small", "medium"], "repeat": 5, "starts": 3, "workers": 1,
                "precision": 0.10, "budget_s": 1.0, "sampling_s": 90.0},
    "large": {"sizes": ["small", "medium", "large"], "repeat": 3, "starts": 3, "workers": 1},
}
ENV_VAR = "PERSISTBENCH_PROFILE"
DEFAULT = "quick"


def from_env(environ: Mapping[str, str] | None = None) -> str:
    """The profile named by PERSISTBENCH_PROFILE (unset or empty: quick)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT
    if value not in PROFILES:
        raise UsageError(f"{ENV_VAR}={value!r} is not a profile; "
                         f"set it to one of {', '.join(PROFILES)} or unset it")
    return value
