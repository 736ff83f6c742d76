"""Self-contained HTML: one `index.html` per machine plus an index of every machine's report.

Everything the page needs is inside it (CSS in a <style>, figures as inline SVG), so it opens
from disk, from a CI artefact or an e-mail attachment, with no server and no network.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime
from pathlib import Path

from persistbench.report.blocks import Figure, Table
from persistbench.report.data import MachineResults, load
from persistbench.report.drawing import draw_all
from persistbench.report.guide import guide
from persistbench.report.machines import write_cross_machine
from persistbench.report.pages import environment
from persistbench.report.values import Num
from persistbench.report.verdict import FACTOR, NEEDS, verdict
from persistbench.report.views import sections
from persistbench.results.flamegraphs import find_profiles
from persistbench.results.schema import write_atomic

SUMMARY = "summary.json"  # next to each machine's index.html; what the index lists


def _duration(run: dict) -> Num:
    try:
        start = datetime.fromisoformat(run["started"])
        end = datetime.fromisoformat(run["finished"])
    except (KeyError, TypeError, ValueError):
        return Num(None, "s")
    return Num((end - start).total_seconds(), "s")


def _known(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Drop what a source did not record (asv knows no filesystem): never print "None"."""
    return [(label, v) for label, v in pairs
            if v not in (None, "", 0) and not (isinstance(v, Num) and not v.value)]


def machine_card(mr: MachineResults) -> dict:
    m = mr.machine
    fs = m.get("filesystem") or {}
    impl = m.get("python_implementation")
    fingerprint = _known([
        ("machine id", m["machine_id"]), ("host", m.get("hostname")), ("arch", m.get("arch")),
        ("CPU", m.get("cpu_model")),
        ("cores", ", ".join(f"{n} {kind}" for n, kind in (
            (m.get("cores_logical"), "logical"), (m.get("cores_physical"), "physical")) if n)),
        ("RAM", Num(m.get("ram_bytes"), "B")),
        ("OS", " ".join(filter(None, (m.get("os"), m.get("kernel"))))),
        ("Python", f"{m['python']} ({impl})" if m.get("python") and impl else m.get("python")),
        ("filesystem", " ".join(filter(None, (
            fs.get("type"), fs.get("mount") and f"on {fs['mount']}",
            fs.get("device") and f"({fs['device']})")))),
    ])
    cal = mr.calibration
    calibration = [(label, Num(cal.get(key), "B/s")) for key, label in (
        ("memory_copy_bps", "memory copy"), ("page_cache_read_bps", "page-cache read"),
        ("cold_read_bps", "cold read (evicted)"), ("write_fsync_bps", "write + fsync"),
    ) if key in cal] if cal else []
    runs = Table("", ["results file", "started", "finished", "run time", "state", "profile",
                      "peak memory method", "allocator", "load average (start → end)",
                      "harness", "command line"],
                 [[r["path"], r["started"], r.get("finished"), _duration(r), r.get("state"),
                   r.get("profile"), r.get("peak_memory_method"), _allocator(r),
                   _load_average(r), r.get("harness_version"),
                   shlex.join(r["argv"])] for r in mr.runs])
    return {"fingerprint": fingerprint, "calibration": calibration, "runs": runs}


def _allocator(run: dict) -> str:
    """`default`, or the malloc settings the run was tuned with (older runs: not recorded)."""
    alloc = run.get("allocator")
    if not alloc:
        return "not recorded"
    tuned = " ".join(f"{k}={v}" for k, v in alloc.get("environment", {}).items())
    return f"{alloc['name']} {tuned}".strip()


def _load_average(run: dict) -> str:
    """1-minute load average at start and end, and stolen CPU: how quiet the machine was."""
    noise = run.get("noise") or {}
    loads = [(noise.get(k) or {}).get("load_average") for k in ("start", "end")]
    text = " → ".join(f"{v[0]:.1f}" if v else "?" for v in loads)
    steal = noise.get("steal_fraction")
    return text + (f", {steal:.1%} stolen" if steal is not None else "")


def headline(m: dict) -> list:
    """The line under the title: what the machine is, as far as the results know it."""
    sklearn = (m.get("packages") or {}).get("scikit-learn")
    return [part for part in (
        m.get("cpu_model"), m.get("arch"),
        m.get("cores_logical") and f"{m['cores_logical']} cores",
        m.get("ram_bytes") and f"{Num(m['ram_bytes'], 'B').text()} RAM",
        m.get("python") and f"Python {m['python']}", sklearn and f"scikit-learn {sklearn}",
    ) if part]


def by_model(guides: list) -> list[tuple[str, list]]:
    """One guide per model, its sizes side by side, in the order the cells name them."""
    grouped: dict[str, list] = {}
    for g in guides:
        grouped.setdefault(g.model, []).append(g)
    return list(grouped.items())


def render_report(mr: MachineResults, profiles: dict | None = None) -> str:
    failed = mr.failed()
    failed_table = Table("", ["experiment", "model", "size", "format", "variant", "status",
                              "reason"],
                         [[c["experiment"], c["model"], c["size"], c["format"],
                           c.get("variant", ""), c["status"], c["reason"]] for c in failed])
    drawn = sections(mr.experiments(), mr.machine)
    draw_all([block for section in drawn for block in section.blocks
              if isinstance(block, Figure)])
    return environment().get_template("report.html.j2").render(
        m=mr, headline=headline(mr.machine), failed=failed, failed_table=failed_table,
        verdict=verdict(mr.cells), needs=NEEDS, factor=Num(FACTOR, "x"),
        guide=by_model(guide(mr)), sections=drawn,
        profiles=profile_table(profiles or {}), **machine_card(mr))


def profile_table(profiles: dict) -> list[dict]:
    """memray profiles beside the page (`profiles/`, see persistbench.commands.profile), for
    its links."""
    return [{"model": model, "size": size, "format": fmt, "phase": phase,
             "peak": Num(info["peak_memory_bytes"], "B"),
             "allocations": info.get("total_allocations"),
             "flamegraph": f"profiles/{info['flamegraph_path'].name}",
             "capture": f"profiles/{info['capture_path'].name}"}
            for (model, size, fmt, phase), info in sorted(profiles.items())]


def safe_dirname(machine_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", machine_id).strip(".") or "machine"


def write_reports(paths: list[Path], output_dir: Path) -> list[Path]:
    """Write `output_dir/<machine>/index.html` per machine found, then the index of all."""
    written = []
    machines = load(paths)
    for mr in machines:
        folder = Path(output_dir) / safe_dirname(mr.machine_id)
        folder.mkdir(parents=True, exist_ok=True)
        page = folder / "index.html"
        page.write_text(render_report(mr, find_profiles(folder / "profiles")),
                        encoding="utf-8")
        m = mr.machine
        write_atomic(folder / SUMMARY, {
            "machine_id": mr.machine_id, "arch": m["arch"], "cpu_model": m["cpu_model"],
            "cores_logical": m["cores_logical"], "python": m["python"],
            "sklearn": m["packages"].get("scikit-learn"),
            "last_run": max(r["started"] for r in mr.runs),
            "cells": len(mr.cells), "failed": len(mr.failed()),
            "sources": [r["path"] for r in mr.runs]})
        written.append(page)
    if len(machines) >= 2:
        write_cross_machine(machines, Path(output_dir))
    write_index(Path(output_dir))
    return written


def write_index(output_dir: Path) -> Path:
    """List every machine report under `output_dir`, including ones written earlier."""
    entries = []
    for summary in sorted(output_dir.glob(f"*/{SUMMARY}")):
        try:
            entry = json.loads(summary.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not a report folder of ours
        if (summary.parent / "index.html").exists():
            entries.append({**entry, "machine_id": summary.parent.name})
    # Pages published beside the machine reports (the CI writes the comparison and asv's).
    links = [(name, text) for name, text in (
        ("machines.html", "every machine side by side"),
        ("compare.html", "the comparison of the latest runs, with its regression verdicts"),
        ("asv/index.html", "asv's pages: every benchmark's history"),
    ) if (output_dir / name).exists()]
    index = output_dir / "index.html"
    index.write_text(environment().get_template("index.html.j2").render(
        entries=entries, links=links,
        columns=["machine", "arch", "CPU", "cores", "Python", "scikit-learn", "last run",
                 "cells", "not ok"]), encoding="utf-8")
    return index




def verdict_fragment(cells: list[dict]) -> str:
    """The verdict table the report opens with, as a self-contained HTML fragment (its own
    styles, no page around it): what a notebook shows for a results object."""
    rows = verdict(cells)
    return environment().get_template("verdict.html.j2").render(verdict=rows, needs=NEEDS,
                                                                factor=Num(FACTOR, "x"))
