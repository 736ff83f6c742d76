"""Names and readings that the experiments write into results and the reports read back.

They live here, below both, so a report never imports an experiment to know what a cell's
outcome or a default means.
"""

from __future__ import annotations

from collections import Counter

# The compat experiment's outcome of one (saved with A, loaded with B) cell, in order.
COMPAT_OUTCOMES = ("ok", "warning", "differs", "error", "crash")
# Outcomes of a file moved to another CPU architecture, best first, and how far a float
# prediction may move (times max(1, |value|)) and still count as the same: two x86_64 OpenBLAS
# kernels already differ by about 1e-14.
PORTABILITY_OUTCOMES = ("identical", "within-tolerance", "differs", "error-load",
                        "error-predict", "crash")
PORTABILITY_TOLERANCE = 1e-9
# Fresh interpreters per round-trip cell and pass that a server-start median needs.
START_REPEATS = 3
# Libraries whose versions each environment of a compat run reports (the ones that can
# change a load): scikit-learn's stack and the serializers of `persistbench.sources.formats`.
SERIALIZERS = ("joblib", "cloudpickle", "skops", "skl2onnx", "onnx", "onnxruntime", "lz4")
REPORTED_LIBRARIES = ("scikit-learn", "numpy", "scipy", *SERIALIZERS)


def cpu_key(key: str) -> str:
    """Where a timing's CPU time of the same runs is kept: `load_s` -> `load_cpu_s`.

    The wall time is the figure a user waits for; the CPU time beside it is the control
    that tells a slower run of the code from a run that waited for the CPU."""
    return key.removesuffix("_s") + "_cpu_s"


def outcome_label(cell: dict) -> str:
    """The outcome of a measured cell; a cell without one (it could not be measured) is
    named by its status in brackets (`[unsupported]`, `[error]`), so it is never mistaken
    for a load that raised."""
    return cell["outcome"] if cell["status"] == "ok" else f"[{cell['status']}]"


def outcome_matrix(cells: list[dict]) -> dict[str, dict[tuple[str, str], Counter]]:
    """format -> (saved with, loaded with) -> counts per `outcome_label`. Failed cells carry
    no saved_with/loaded_with, so the pair is read from the variant "A->B"."""
    matrix: dict[str, dict[tuple[str, str], Counter]] = {}
    for cell in cells:
        if cell["experiment"] != "compat":
            continue
        saved, loaded = cell["variant"].split("->")
        pairs = matrix.setdefault(cell["format"], {})
        pairs.setdefault((saved, loaded), Counter())[outcome_label(cell)] += 1
    return matrix
