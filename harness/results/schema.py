"""The one results schema: create, append atomically, read, merge, validate.

Every finished cell is written by replacing the whole file (write to a temporary file in the
same directory, fsync, rename), so a kill at any moment leaves either the previous or the new
complete file on disk, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

SCHEMA = "persistbench/1"
STATUSES = ("ok", "unsupported", "error", "timeout", "crashed")


class ResultsError(ValueError):
    """A results file that cannot be read or does not follow the schema."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cell_id(experiment: str, model: str, size: str, fmt: str, variant: str = "") -> str:
    parts = [experiment, model, size, fmt] + ([variant] if variant else [])
    return "/".join(parts)


def record_failure(record: dict, outcome: dict, where: str) -> None:
    """Carry a failed outcome's status, reason (prefixed with where it failed) and details."""
    record["status"] = outcome["status"]
    record["reason"] = f"{where}: {outcome.get('reason', '')}"
    for key in ("traceback", "signal"):
        if key in outcome:
            record[key] = outcome[key]


def write_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # One line, through json's C encoder: an indented dump takes its pure-Python path,
        # 3x slower, and a run rewrites its results file after every cell.
        text = json.dumps(data, allow_nan=False, default=_jsonable)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj: Any):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@cache
def schema() -> dict:
    return json.loads(files("persistbench.results").joinpath("results_schema.json").read_text())


def validate(data: dict) -> None:
    import jsonschema

    try:
        jsonschema.validate(data, schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise ResultsError(f"results do not follow {SCHEMA} at {where}: {exc.message}") from exc


def read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: no such results file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a JSON results file ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not a {SCHEMA} results file")
    validate(data)
    return data


class ResultsFile:
    """A results file being written by a run: append cells, never lose one."""

    def __init__(self, path: Path, data: dict):
        self.path = Path(path)
        self.data = data

    @classmethod
    def create(cls, path: Path, machine: dict, run: dict) -> ResultsFile:
        data = {"schema": SCHEMA, "machine": machine, "run": {**run, "state": "running"},
                "cells": []}
        validate(data)
        results = cls(path, data)
        results.flush()
        return results

    @classmethod
    def resume(cls, path: Path, run: dict) -> ResultsFile:
        data = read(path)
        history = data["run"].setdefault("resumed", [])
        history.append({"started": run["started"], "argv": run["argv"]})
        data["run"]["state"] = "running"
        return cls(path, data)

    def done_ids(self) -> set[str]:
        return {c["cell_id"] for c in self.data["cells"]}

    def append(self, cell: dict) -> None:
        self.data["cells"].append(cell)
        self.flush()

    def record(self, cell_id: str) -> dict | None:
        return next((c for c in self.data["cells"] if c["cell_id"] == cell_id), None)

    def put(self, cell: dict) -> None:
        """Replace the record of the same cell id (a further pass of it), or append it."""
        self.put_many([cell])

    def put_many(self, records: list[dict]) -> None:
        """`put` for several records, written once (a batch's records arrive together)."""
        cells = self.data["cells"]
        where = {c["cell_id"]: i for i, c in enumerate(cells)}
        for cell in records:
            index = where.get(cell["cell_id"])
            if index is None:
                where[cell["cell_id"]] = len(cells)
                cells.append(cell)
            else:
                cells[index] = cell
        self.flush()

    def finish(self, state: str = "finished") -> None:
        self.data["run"]["state"] = state
        self.data["run"]["finished"] = now()
        self.flush()

    def flush(self) -> None:
        write_atomic(self.path, self.data)

