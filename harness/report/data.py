"""Results files -> one merged view per machine. The report reads only this; it never measures.

Several results files of one machine (e.g. a quick run and a later `--experiments sharing`
run) make one report: their cells are merged, and when a cell was measured more than once the
run that started last wins, so a re-measured cell replaces its older value instead of showing
twice. `with_siblings` finds those files: a serving run must add to the machine's report,
not replace the round trips measured an hour before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from persistbench.results.importers import read_any
from persistbench.results.schema import SCHEMA


@dataclass
class MachineResults:
    machine: dict  # fingerprint of the latest run, with the latest calibration found
    runs: list[dict] = field(default_factory=list)  # each {"path": str, **run}
    cells: list[dict] = field(default_factory=list)

    @property
    def machine_id(self) -> str:
        return self.machine["machine_id"]

    @property
    def calibration(self) -> dict | None:
        return self.machine.get("calibration")

    def experiments(self) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = defaultdict(list)
        for cell in self.cells:
            grouped[cell["experiment"]].append(cell)
        return dict(grouped)

    def models(self) -> list[tuple[str, str]]:
        """(model, size) pairs in the order the cells name them."""
        return list(dict.fromkeys((c["model"], c["size"]) for c in self.cells))

    def formats(self) -> list[str]:
        return list(dict.fromkeys(c["format"] for c in self.cells))

    def failed(self) -> list[dict]:
        return [c for c in self.cells if c["status"] != "ok"]


def load(paths: list[Path]) -> list[MachineResults]:
    """Read and validate every input; one `MachineResults` per machine id, in argument order.

    An input is a results file, a pytest-benchmark JSON file or an asv results directory
    (`persistbench.results.importers`), so a report can come from any front.
    """
    read = [(Path(p), data) for p in paths for data in read_any(p)]
    machines: dict[str, MachineResults] = {}
    for path, data in sorted(read, key=lambda item: item[1]["run"]["started"]):
        machine = dict(data["machine"])
        known = machines.get(machine["machine_id"])
        if known is None:
            known = machines[machine["machine_id"]] = MachineResults(machine=machine)
        else:
            machine["calibration"] = machine.get("calibration") or known.calibration
            known.machine = machine
        known.runs.append({"path": str(path), **data["run"]})
        by_id = {c["cell_id"]: c for c in known.cells}
        by_id.update({c["cell_id"]: c for c in data["cells"]})
        known.cells = list(by_id.values())
    order = list(dict.fromkeys(data["machine"]["machine_id"] for _, data in read))
    return [machines[mid] for mid in order]


def _machine_of(path: Path) -> str | None:
    """The machine id of a persistbench results file; None for anything else in the folder."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return None
    return (data.get("machine") or {}).get("machine_id")


def with_siblings(paths: list[Path]) -> list[Path]:
    """`paths` plus every results file of the same machines in the same folders.

    Only persistbench results files gain siblings; asv directories and pytest-benchmark
    files stand alone. Files that are not results (or not readable) are passed over here;
    the ones named in `paths` are still read, and refused with their reason, by `load`.
    """
    out = list(dict.fromkeys(Path(p) for p in paths))
    for path in list(out):
        machine = _machine_of(path) if path.is_file() else None
        if machine is None:
            continue
        for sibling in sorted(path.parent.glob("*.json")):
            if sibling not in out and _machine_of(sibling) == machine:
                out.append(sibling)
    return out
