"""A machine's id, derived from the fingerprint a results file records: how results of
one machine are grouped, whether measured here or imported from another front."""

from __future__ import annotations

import hashlib


def _slug(text: str, limit: int) -> str:
    words = "".join(c.lower() if c.isalnum() else " " for c in text).split()
    return "-".join(words)[:limit].strip("-")


def machine_id(fp: dict) -> str:
    """Stable across runs and reboots; two hosts with one name still differ by hardware.

    With a label (`PERSISTBENCH_MACHINE_LABEL`, e.g. a CI runner label) the id is the label,
    the architecture and the CPU model, readable and free of the hostname, which CI runners
    change every run; without one, the hostname and a digest of the hardware tell hosts apart.
    """
    label = _slug(fp.get("label") or "", 40)
    if label:
        arch = _slug(fp["arch"], 16)
        parts = [label] if arch in label else [label, arch]
        return "-".join([*parts, _slug(fp["cpu_model"], 40)])
    stable = "|".join(str(fp[k]) for k in ("hostname", "arch", "cpu_model", "cores_logical"))
    stable += f"|{round(fp['ram_bytes'] / 2**30)}GiB|{fp['os']}"
    digest = hashlib.sha256(stable.encode()).hexdigest()[:8]
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in fp["hostname"])[:24]
    return f"{host}-{fp['arch']}-{digest}"
