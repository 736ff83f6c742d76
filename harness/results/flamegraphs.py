"""Where memray profiles of cell phases are kept, and how a report finds them.

`persistbench profile` writes them (see `persistbench.commands.profile`); the report links
a cell's flamegraph when one is found beside its page. Reading them needs no memray.
"""

from __future__ import annotations

import json
from pathlib import Path


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
