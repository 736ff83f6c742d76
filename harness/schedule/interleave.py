"""Same-session A/B: both sides' blocks of every cell, alternated in a random order.

On a shared machine the drift between two runs minutes apart is larger than many real
changes (a cell's pass median moved sd 0.17-0.21 in log between passes here), so two
environments are measured in one session, as asv `continuous` does, and at a fine grain, as
in randomized multiple interleaved trials (Abedi and Brecht, ICPE 2017): for every cell, one
child on A and one on B start together, and after their warm-ups their samples alternate one
by one (each waits on its control socket while the other measures), the side that goes
first drawn at random for every sample. Whatever the machine does during those
milliseconds hits both samples of the pair alike; the order being random, what it does not
hit alike averages out instead of favouring one side.

The session is made of rounds. Each round starts a fresh server per side (both at once),
visits the cells in an order of its own and takes one pair of blocks per cell. A process's
timings move together (memory layout, hash seed, a per-process mode such as the libsvm
predict's), so with one server per side for the whole session such a difference would be
fixed for every pair and read as a difference between A and B; a fresh pair of servers per
round makes it spread between rounds instead. Rounds are the unit of evidence: they are
independent of each other.

Both sides' children of a cell run on one CPU, drawn at random for each cell and round. Their
steps alternate, so they never need two; on one CPU they share what that CPU does meanwhile.
On two CPUs, one side could sit beside a process hogging its CPU for the whole block while
the other ran free: unpinned, with a busy loop pinned to one of this machine's two cores,
whole rounds of a 1.4 ms load read B/A x2-x5 and the session's intervals widened to x1-x5.

Every round is written to the results file atomically; a block that fails, hangs or dies
stops that cell with its reason, and the session goes on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from persistbench import __version__
from persistbench.envs.server import request, running
from persistbench.experiments import Cell
from persistbench.experiments.ab import read_block
from persistbench.experiments.compat import server_preload
from persistbench.measure.noise import noise_snapshot, noise_summary
from persistbench.measure.phases import PEAK_METHOD, allocator
from persistbench.results.schema import ResultsFile, now

SIDES = ("a", "b")
PREPARE_TIMEOUT_S = 3600.0
BLOCK = "persistbench.experiments.ab:block_in_env"
PREPARE = "persistbench.experiments.ab:prepare_in_env"


class SideUnavailable(RuntimeError):
    """A side's environment could not be built or its server not started."""


@dataclass
class ABOptions:
    output: Path
    rounds: int = 10
    samples: int = 20  # per block
    budget_s: float = 2.0  # per pair of blocks: no further sample once it is spent
    seed: int = 0
    timeout_s: float = 600.0  # per block
    argv: list[str] = field(default_factory=list)
    calibrate: bool = True
    profile: str | None = None


def _open(options: ABOptions, sides: dict[str, dict], cells: list[Cell]) -> ResultsFile:
    from persistbench.measure.machine import describe

    run = {"started": now(), "finished": None, "argv": options.argv,
           "harness_version": __version__, "profile": options.profile,
           "peak_memory_method": PEAK_METHOD, "python_executable": sys.executable,
           "allocator": allocator(), "noise": {"start": noise_snapshot()},
           "ab": {"sides": sides, "rounds": options.rounds, "samples": options.samples,
                  "seed": options.seed, "rounds_done": 0}}
    results = ResultsFile.create(options.output, describe(options.output.parent,
                                                          calibration=options.calibrate), run)
    for cell in cells:
        results.data["cells"].append({**cell.header(), "status": "ok", "pairs": []})
    results.flush()
    return results


def _prepare(served: dict[str, dict], cells: list[Cell], seed: int, scratch: Path) -> dict:
    """Train what the cells need into each side's cache; each side's exact versions."""
    models = sorted({c.model for c in cells})
    sizes = sorted({c.size for c in cells})
    found = {}
    for side in SIDES:
        for size in sizes:
            result = scratch / f"prepare-{side}-{size}.json"
            proc = request(served[side]["server"], PREPARE,
                           {"models": models, "size": size, "seed": seed,
                            "result": str(result)}, scratch, PREPARE_TIMEOUT_S)
            answer = read_block(result)
            if "versions" not in answer:
                raise SideUnavailable(f"side {side.upper()} could not prepare its models "
                                      f"(exit {proc.returncode}): {proc.stderr[-300:]}")
            found[side] = answer
    return found


class _Side(threading.Thread):
    """One side's block: its request to the server, run in a thread, and its control line."""

    def __init__(self, name: str, server: str, cell: Cell, options: ABOptions,
                 scratch: Path, sockets: Path, cpu: int | None):
        super().__init__(daemon=True)
        self.side, self.server, self.options = name, server, options
        self.workdir = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{name}-"))
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.address = str(sockets / f"{name}.sock")
        Path(self.address).unlink(missing_ok=True)
        self.listener.bind(self.address)
        self.listener.listen(1)
        self.args = {"model": cell.model, "size": cell.size, "seed": options.seed,
                     "format": cell.format, "workdir": str(self.workdir),
                     "result": str(self.workdir / "block.json"), "control": self.address,
                     "cpu": cpu}
        self.proc = None
        self.error: str | None = None
        self.conn: socket.socket | None = None
        self.lines = None

    def run(self) -> None:
        try:
            self.proc = request(self.server, BLOCK, self.args, self.workdir,
                                self.options.timeout_s)
        except (TimeoutError, OSError, RuntimeError) as exc:
            self.error = str(exc)

    def attach(self, deadline: float) -> bool:
        """Wait for the child's control connection; False when it ended without one."""
        self.listener.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                self.conn, _ = self.listener.accept()
            except TimeoutError:
                if not self.is_alive():
                    return False
                continue
            self.conn.settimeout(max(1.0, deadline - time.monotonic()))
            self.lines = self.conn.makefile("r")
            return True
        return False

    def sample(self) -> bool:
        try:
            self.conn.sendall(b"sample\n")
            return self.lines.readline().strip() == "ok"
        except OSError:
            return False

    def finish(self) -> dict:
        """Tell the child to stop, wait for it, and read what it wrote."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.sendall(b"stop\n")
        self.join(self.options.timeout_s)
        for closable in (self.lines, self.conn, self.listener):
            if closable is not None:
                closable.close()
        if self.error or self.proc is None:
            return {"status": "timeout" if "longer than" in (self.error or "") else "error",
                    "reason": self.error or "the block did not end"}
        block = read_block(Path(self.args["result"]))
        if self.proc.returncode and block["status"] == "ok":
            block = {"status": "error", "reason": f"exit status {self.proc.returncode}"}
        if block["status"] == "error" and self.proc.stderr.strip():
            block["reason"] += ": " + self.proc.stderr.strip().splitlines()[-1][:300]
        return block


def _pair(served: dict[str, dict], cell: Cell, options: ABOptions, scratch: Path,
          sockets: Path, rng: np.random.Generator) -> dict:
    """Both sides' blocks of one cell at once, their samples alternating one by one in a
    random order, until `samples` or the block budget is spent."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = int(rng.choice(cpus)) if cpus else None
    sides = {s: _Side(s, served[s]["server"], cell, options, scratch, sockets, cpu)
             for s in SIDES}
    for side in sides.values():
        side.start()
    deadline = time.monotonic() + options.timeout_s
    attached = all([side.attach(deadline) for side in sides.values()])
    orders, began = [], time.monotonic()
    while attached and len(orders) < options.samples and not (
            orders and time.monotonic() - began > options.budget_s):
        order = [SIDES[i] for i in rng.permutation(len(SIDES))]
        if not all(sides[s].sample() for s in order):
            break
        orders.append("".join(order))
    return {"orders": orders, **{s: side.finish() for s, side in sides.items()}}


def _one_round(served: dict[str, dict], cells: list[Cell], results: ResultsFile,
               index: int, options: ABOptions, scratch: Path) -> None:
    rng = np.random.default_rng([options.seed, index])
    with tempfile.TemporaryDirectory(prefix="pb-ab-") as sockets:  # short: socket paths
        for i in rng.permutation(len(cells)):
            cell = cells[i]
            record = results.record(cell.cell_id)
            if record["status"] != "ok":
                continue
            pair = _pair(served, cell, options, scratch, Path(sockets), rng)
            failed = [s for s in SIDES if pair[s]["status"] != "ok"]
            if failed:
                record["status"] = pair[failed[0]]["status"]
                record["reason"] = "; ".join(f"side {s.upper()}: {pair[s].get('reason', '')}"
                                             for s in failed)
                continue
            record["pairs"].append({"round": index + 1, "orders": pair["orders"],
                                    **{s: {k: v for k, v in pair[s].items() if k != "status"}
                                       for s in SIDES}})


def run_ab(cells: list[Cell], sides: dict[str, dict], options: ABOptions,
           say=print) -> dict:
    """Measure `cells` on both sides (environment dicts with `python`) in rounds of pairs;
    the results file's data."""
    formats = sorted({c.format for c in cells})
    results = _open(options, sides, cells)
    ab = results.data["run"]["ab"]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".pb-ab-", dir=options.output.parent) as tmp:
        scratch = Path(tmp)  # beside the results: a disk, where /tmp may be tmpfs
        for index in range(options.rounds):
            began = time.monotonic()
            with running([sides[s] for s in SIDES], server_preload(formats)) as started:
                served = dict(zip(SIDES, started, strict=True))
                for side in SIDES:
                    if not served[side].get("server"):
                        raise SideUnavailable(f"side {side.upper()}: "
                                              f"{served[side].get('server_error')}")
                if index == 0:
                    for side, answer in _prepare(served, cells, options.seed, scratch).items():
                        ab["sides"][side]["versions"] = answer["versions"]
                        failed = {m: why for m, why in answer["models"].items() if why}
                        for record in results.data["cells"]:
                            if record["model"] in failed:
                                record["status"] = "error"
                                record["reason"] = (f"side {side.upper()}: training failed: "
                                                    f"{failed[record['model']]}")
                _one_round(served, cells, results, index, options, scratch)
            ab["rounds_done"] = index + 1
            ab["elapsed_s"] = time.monotonic() - start
            results.flush()
            say(f"round {index + 1}/{options.rounds}: {time.monotonic() - began:.0f} s")
    noise = results.data["run"]["noise"]
    noise.update(noise_summary(noise.get("start"), noise_snapshot()))
    results.finish()
    return results.data
