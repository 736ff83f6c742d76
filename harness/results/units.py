"""Humanised numbers for people; results keep SI base units, these only render them.

`humanize.metric` picks the SI prefix after rounding, so a value just under a unit boundary
reads "1.00 kB", never "1e+03 kB" or "1000 kB".
"""

from __future__ import annotations

import humanize

DIGITS = 3  # significant digits shown


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if abs(n) < 999.5:  # whole bytes below a kilobyte: "12 B", not "12.0 B"
        return f"{n:.0f} B"
    return humanize.metric(n, "B", precision=DIGITS)


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 60:  # minutes read better than kiloseconds
        return f"{s / 60:.{DIGITS}g} min"
    return humanize.metric(s, "s", precision=DIGITS)
