"""memray profile of one phase of one cell: which code allocates what at the phase's peak.

The per-phase peak RSS of a results file says how much a dump or a load needs; a memray
capture says where it goes. The phase runs in a child forked from the harness's forkserver
(the libraries already imported, as in a measured cell), under `memray.Tracker` for exactly
the phase, after the cached model was read (and, for a load, the file was dumped) untracked.

Files of one profile (the report links to them when present), all in one directory,
by default `reports/<machine-id>/profiles/`:

    <model>-<size>-<format>-<phase>.bin    memray's capture (`memray stats`, `memray tree` …)
    <model>-<size>-<format>-<phase>.html   memray's flamegraph of the peak
    <model>-<size>-<format>-<phase>.json   {"peak_memory_bytes", "total_allocations",
                                            "capture", "flamegraph", the cell, "machine_id"}

memray's peak is the high-water mark of live heap allocations it saw during the phase; the
results file's `*_peak_rss_bytes` is the phase's resident-memory high-water mark. They
differ (allocator caching, mapped files, untracked native memory) and are kept apart.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from persistbench.commands.options import REPORTS_DIR, positive
from persistbench.results.flamegraphs import default_dir, profile_name
from persistbench.results.schema import now, write_atomic
from persistbench.sources.formats import FORMATS, Unsupported, describe_exception
from persistbench.sources.models import UsageError, load_cached
from persistbench.sources.resolve import resolve_spec

PHASES = ("dump", "load")
SEED = 0


def capture(model: str, size: str, fmt: str, phase: str, bin_path: str,
            result_path: str) -> None:
    """Child entry point: run the phase under memray and leave the outcome in result_path."""
    import memray

    form = FORMATS[fmt]
    try:
        est, X_eval = load_cached(resolve_spec(model), size, SEED)
        path = Path(bin_path).with_suffix(form.suffix)
        if phase == "dump":
            def run():
                return form.dump(est, path, X_eval)
        else:
            form.dump(est, path, X_eval)
            del est
            prepared = form.prepare_load(path)

            def run():
                return form.load(path, prepared)
        destination = memray.FileDestination(bin_path, overwrite=True)
        with memray.Tracker(destination=destination):
            run()
        path.unlink(missing_ok=True)
        outcome = {"status": "ok"}
    except Unsupported as exc:
        outcome = {"status": "unsupported", "reason": str(exc)}
    except Exception as exc:
        outcome = {"status": "error", "reason": describe_exception(exc)}
    write_atomic(Path(result_path), outcome)


def profile(model: str, size: str, fmt: str, phase: str, output: Path,
            timeout_s: float = 600.0, machine_id: str = "") -> dict:
    """Capture, flamegraph and peak of one cell phase; returns what the .json holds."""
    from persistbench.schedule.children import run_child
    from persistbench.schedule.runner import train_model

    if phase not in PHASES:
        raise UsageError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)}")
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    sizes = resolve_spec(model).sizes()
    if size not in sizes:
        raise UsageError(f"unknown size {size!r} for {model}; valid: {', '.join(sizes)}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    stem = output / profile_name(model, size, fmt, phase)
    info: dict = {"model": model, "size": size, "format": fmt, "phase": phase,
                  "machine_id": machine_id, "created": now()}
    with tempfile.TemporaryDirectory(prefix=".persistbench-profile-", dir=output) as scratch:
        trained = train_model(model, size, SEED, Path(scratch))
        if trained["status"] != "ok":
            outcome = {"status": "error", "reason": f"training failed: {trained.get('reason')}"}
        else:
            outcome = run_child(capture, (model, size, fmt, phase, str(stem) + ".bin"),
                                Path(scratch) / "profile.json", timeout_s)
    info.update(outcome)
    if outcome["status"] == "ok":
        info.update(_summarise(stem))
    write_atomic(stem.with_suffix(".json"), info)
    return info


def _summarise(stem: Path) -> dict:
    """memray's own flamegraph HTML and the capture's peak, read with memray's reader."""
    import memray

    capture_path, html = stem.with_suffix(".bin"), stem.with_suffix(".html")
    subprocess.run([sys.executable, "-m", "memray", "flamegraph", "--force", "-o", str(html),
                    str(capture_path)], check=True, capture_output=True, text=True)
    reader = memray.FileReader(str(capture_path))
    try:
        meta = reader.metadata
        return {"peak_memory_bytes": int(meta.peak_memory),
                "total_allocations": int(meta.total_allocations),
                "memray_version": version("memray"),
                "capture": capture_path.name, "flamegraph": html.name}
    finally:
        reader.close()


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="memray capture, flamegraph and peak of one cell phase")
    p.add_argument("--model", required=True, help="zoo model or package.module:factory")
    p.add_argument("--size", default="small", help="model size (default small)")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--phase", required=True, choices=["dump", "load"])
    p.add_argument("--output", type=Path,
                   help="directory (default reports/<machine-id>/profiles)")
    p.add_argument("--timeout", type=positive(float), default=600.0,
                   help="seconds before the profiled child is killed (default 600)")
    p.set_defaults(func=execute)


def execute(args) -> int:
    from persistbench.measure.machine import fingerprint
    from persistbench.results.units import human_bytes

    machine_id = fingerprint(REPORTS_DIR)["machine_id"]
    output = args.output or default_dir(REPORTS_DIR, machine_id)
    info = profile(args.model, args.size, args.format, args.phase, output, args.timeout,
                   machine_id)
    if info["status"] != "ok":
        print(f"persistbench: no profile: {info['status']}: {info.get('reason')}",
              file=sys.stderr)
        return 1
    print(f"peak memory of the {args.phase} (memray): {human_bytes(info['peak_memory_bytes'])} "
          f"({info['peak_memory_bytes']} bytes, {info['total_allocations']} allocations)")
    print(f"flamegraph: {output / info['flamegraph']}")
    print(f"capture: {output / info['capture']}")
    return 0
