"""Reading the measurement methods a run recorded (`run.methods`), so figures taken with
different methods are shown apart, never as a ratio. Which methods this platform uses is
decided in `persistbench.measure.methods`; this side only reads what results say.
"""

from __future__ import annotations

# Which method families a measure depends on, by its key: the first rule that matches.
# Timings depend on the allocator; memory figures also on how peaks and sharing are read.
FAMILY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("peak_rss_bytes", ("peak_memory", "allocator")),
    ("pss_bytes", ("shared_memory", "allocator")),
    ("uss_bytes", ("shared_memory", "allocator")),
    ("load_cold", ("cold_cache", "allocator")),
    ("cold_read", ("cold_cache",)),
    ("rss_bytes", ("allocator",)),
    ("_s", ("allocator",)),
)



def families_of(key: str) -> tuple[str, ...]:
    """The method families a measure depends on (none: a size, a count, an equality)."""
    for part, families in FAMILY_RULES:
        if key.endswith(part) if part == "_s" else part in key:
            return families
    return ()


def run_methods(run: dict) -> dict[str, str]:
    """A run's methods; older results files recorded only the peak-memory method."""
    if run.get("methods"):
        return run["methods"]
    return {"peak_memory": run["peak_memory_method"]} if run.get("peak_memory_method") else {}


def differing(key: str, a: dict | None, b: dict | None) -> dict[str, tuple[str, str]]:
    """Families whose recorded method differs between two runs for this measure.

    A family one side did not record cannot be told apart: it is not reported as differing.
    """
    a, b = a or {}, b or {}
    return {f: (a[f], b[f]) for f in families_of(key) if f in a and f in b and a[f] != b[f]}
