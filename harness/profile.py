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

import json
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from harness.formats import FORMATS, Unsupported, describe_exception
from harness.models import UsageError, load_cached, resolve_spec
from harness.results import now, write_atomic

PHASES = ("dump", "load")
SUFFIXES = (".bin", ".html", ".json")
SEED = 0


def profile_name(model: str, size: str, fmt: str, phase: str) -> str:
    return f"{model}-{size}-{fmt}-{phase}"


def default_dir(reports: Path, machine_id: str) -> Path:
    return Path(reports) / machine_id / "profiles"


def find_profiles(directory: Path) -> dict[tuple[str, str, str, str], dict]:
    """The profiles in a directory by (model, size, format, phase), with their file paths."""
    found: dict[tuple[str, str, str, str], dict] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            info = json.loads(path.read_text())
            key = (info["model"], info["size"], info["format"], info["phase"])
            if info["status"] != "ok":
                continue  # a phase that could not be profiled has nothing to link
            flamegraph = path.with_name(info["flamegraph"])
            capture_path = path.with_name(info["capture"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a profile of ours
        if flamegraph.is_file():
            found[key] = {**info, "json_path": path, "flamegraph_path": flamegraph,
                          "capture_path": capture_path}
    return found


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
    from harness.runner import run_child, train_model

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
