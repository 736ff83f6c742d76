"""The protocol a measure was taken under, named from the measure's key.

The same word means different situations: a round trip's `load_s` is a load repeated in a
process that has already loaded the model once, its `start_load_s` the first load in a
fresh interpreter, its `load_cold_s` a load after the file's pages were evicted. MEASURING.md
shows these differ by an order of magnitude, so a figure read without its protocol misleads.
Results do not record a protocol per measure yet; until they do, `protocol` derives it from
the experiment and the key, by the rules below (first match wins). It is one function so
that recorded protocols can replace it in one place.

| protocol            | what the figure stands for                                           |
|---------------------|----------------------------------------------------------------------|
| `deterministic`     | a file size: the same on every run                                   |
| `fidelity`          | the loaded model's predictions against the original's                |
| `fresh interpreter` | a new Python process: its imports, first load and first prediction   |
| `cold page cache`   | the file's pages evicted before each load (`load_cold_*`)            |
| `first in process`  | the first run of a phase in its process: the warm-up, kept apart     |
| `warm in-process`   | repeated in one process after the warm-up: the steady state          |
| `fresh servers`     | N freshly started serving processes, memory read after a prediction  |
| `other environment` | saved in one scikit-learn environment, loaded in another             |
| `once`              | measured once per cell, not repeated                                 |
"""

from __future__ import annotations

PROTOCOLS = ("deterministic", "fidelity", "fresh interpreter", "cold page cache",
             "first in process", "warm in-process", "fresh servers", "other environment",
             "once")

BY_EXPERIMENT = {  # when no rule on the key applies
    "roundtrip": "warm in-process",
    "inference": "warm in-process",
    "footprint": "fresh interpreter",
    "sharing": "fresh servers",
    "compat": "other environment",
}


def protocol(experiment: str, key: str) -> str:
    """The protocol of measure `key` (a dotted path, as `report.compare.measures` names it)."""
    leaf = key.rsplit(".", 1)[-1]
    if "file_bytes" in leaf:
        return "deterministic"
    if leaf.startswith("label_agreement") or leaf.endswith("_diff"):
        return "fidelity"
    if experiment == "roundtrip":
        if key.startswith("start_"):
            return "fresh interpreter"
        if "cold" in key:
            return "cold page cache"
        if "_first" in key:  # dump_first_s, load_first_peak_rss_bytes, …_after_first_load_s
            return "first in process"
        if key == "predict_eval_s":
            return "once"
    if "warmup" in leaf:
        return "first in process"
    return BY_EXPERIMENT.get(experiment, "once")
