"""The verdict: per model, the format that wins each need, its figure and its margin.

It answers "which format should I use, and why?" in one table, read before anything else:
one row per model (and size), one column per need. Each answer names the winning format,
the measured figure and how far ahead it is; formats too close to call are named together
as a tie; a need nobody measured says so and gives the command that measures it.

Two formats tie unless the runner-up is at least `FACTOR` times worse *and*, when both
figures carry a sample range, the ranges do not overlap: asv's rule for "changed"
(`--factor` 1.1 and samples that differ), because timings on a shared machine move by more
than small margins between runs. They also tie when their difference is below the harness
floor (the cost of timing an empty phase under the figures' protocol, recorded beside each
timing as `floor_s`): such a difference is the harness's, not the formats'.

Reads only cells (the results schema), so the report, the terminal and `persistbench advise`
print the same answers: `verdict(cells)` for the rows, `render_terminal(rows)` to print them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from persistbench.report.values import Num, measured, median
from persistbench.sources.formats import FORMATS

FACTOR = 1.1
MODEL_EXPERIMENTS = ("roundtrip", "sharing", "inference", "footprint", "robustness")
NEEDS = {  # key: column title
    "serve": "fastest to serve",
    "memory": "least memory across N processes",
    "size": "smallest file",
    "untrusted": "safe to load from an untrusted source",
    "no_python": "no Python at serving time",
}
START_KEYS = ("start_import_s", "start_load_s", "start_first_predict_s")


@dataclass(frozen=True)
class Answer:
    """One need of one model: who wins, by how much, or why there is no winner."""

    winners: tuple[str, ...] = ()  # one format; several when tied; none: not measured / none
    figure: Num | None = None
    figure_note: str = ""  # what the figure is: "for 4 processes", "start to first prediction"
    margin: str = ""  # "3.9× less than pickle-p5"
    note: str = ""  # caveats: fidelity, robustness, types to trust, what was left out
    command: str = ""  # when not measured: the command that measures it
    verdict: str = "win"  # "win", "tie", "none" (measured, nothing qualifies), "not measured"

    def headline(self) -> str:
        if self.verdict == "not measured":
            return "not measured"
        if self.verdict == "none":
            return "none"
        if self.verdict == "tie":
            return "tie: " + ", ".join(self.winners)
        return self.winners[0]

    def text(self) -> str:
        """The whole answer on one line: what the terminal and Markdown print."""
        parts = [self.headline()]
        if self.figure is not None:
            parts.append(" ".join(filter(None, (self.figure.text(), self.figure_note))))
        parts += [p for p in (self.margin, self.note) if p]
        if self.command:
            parts.append(f"run `{self.command}`")
        return parts[0] + "".join(f"{' — ' if i == 0 else '; '}{p}"
                                  for i, p in enumerate(parts[1:]))


@dataclass
class VerdictRow:
    model: str
    size: str
    answers: dict[str, Answer]  # need key (NEEDS) -> answer

    @property
    def label(self) -> str:
        return self.model if self.size == "small" else f"{self.model} ({self.size})"


@dataclass(frozen=True)
class Candidate:
    fmt: str
    value: float
    low: float
    high: float
    floor: float = 0.0  # the harness's own cost of timing nothing under this figure's protocol
    shown: Num | None = None  # a single timing's median with its ± and n, as printed


def candidate(fmt: str, measures: list) -> Candidate | None:
    """A format's figure as the sum of measures (a stats dict or a number each), with the
    sum of their minima and maxima as its range; None when any part is missing."""
    if not measures or any(median(m) is None for m in measures):
        return None
    def bound(m, key: str) -> float:  # asv keeps no min/max when it kept no samples
        found = m.get(key) if isinstance(m, dict) else None
        return median(m) if found is None else found

    value = sum(median(m) for m in measures)
    low, high = sum(bound(m, "min") for m in measures), sum(bound(m, "max") for m in measures)
    floor = sum((m.get("floor_s") or 0.0) if isinstance(m, dict) else 0.0 for m in measures)
    shown = measured(measures[0]) if len(measures) == 1 else None
    return Candidate(fmt, value, min(low, value), max(high, value), floor, shown)


def tied(best: Candidate, other: Candidate) -> bool:
    if other.value - best.value <= max(best.floor, other.floor):
        return True  # below the harness floor: the timer's difference, not the formats'
    if best.value <= 0:
        return other.value <= 0
    return other.value < best.value * FACTOR or other.low <= best.high


def ranked(cands: list[Candidate], unit: str, less: str, figure_note: str = "",
           note: str = "") -> Answer:
    """The lowest figure wins; the formats tied with it share the win; the margin is against
    the best format outside the tie."""
    order = sorted(cands, key=lambda c: c.value)
    best = order[0]
    ties = [c for c in order if tied(best, c)]
    rest = [c for c in order if c not in ties]
    margin = ""
    if rest:
        other = rest[0]
        ratio = other.value / best.value if best.value > 0 else float("inf")
        margin = f"{Num(ratio, 'x').text()} {less} than {other.fmt}"
    elif len(order) > 1:
        margin = f"{'both' if len(order) == 2 else f'all {len(order)}'} within " \
                 f"{Num(FACTOR, 'x').text()}"
    else:
        margin = "the only format measured"
    figure = best.shown if best.shown is not None and unit == "s" else Num(best.value, unit)
    return Answer(tuple(c.fmt for c in ties), figure, figure_note, margin, note,
                  verdict="tie" if len(ties) > 1 else "win")


def short_reason(cell: dict, width: int = 90) -> str:
    """A failed cell's status and the first clause of its reason, for a table cell."""
    reason = (cell.get("reason") or "").split(" (caused by")[0].split("\n")[0]
    step, _, rest = reason.partition(": ")
    if step.endswith("_step") and rest:  # "dump_step: ValueError: ..." -> "ValueError: ..."
        reason = rest
    if len(reason) > width:
        reason = reason[:width - 1].rstrip() + "…"
    return f"{cell['format']} {cell['status']}: {reason}"


def not_measured(command: str, note: str = "") -> Answer:
    return Answer(note=note, command=command, verdict="not measured")


def _traits(cell: dict) -> dict:
    if "format_traits" in cell:
        return cell["format_traits"]
    return FORMATS[cell["format"]].traits() if cell["format"] in FORMATS else {}


def _command(model: str, size: str, *extra: str) -> str:
    return " ".join(("persistbench run --models", model, "--sizes", size, *extra))


# ---------------------------------------------------------------------------- needs

def serve(rt: dict[str, dict], model: str, size: str) -> Answer:
    """Start plus first prediction: a fresh interpreter's figures when measured, otherwise a
    warm in-process load (plus the first prediction when measured)."""
    ok = {f: c for f, c in rt.items() if c["status"] == "ok"}
    started = [c for f in ok if (c := candidate(f, [ok[f].get(k) for k in START_KEYS]))]
    if started:
        return ranked(started, "s", "faster",
                      "from a fresh interpreter to the first prediction",
                      "import, load and one-row prediction (medians)")
    with_first = [c for f in ok
                  if (c := candidate(f, [ok[f].get("load_s"), ok[f].get("first_predict_s")]))]
    if with_first:
        return ranked(with_first, "s", "faster", "to load and predict once (warm, in process)",
                      "fresh-interpreter start not measured")
    eager = {f: c for f, c in ok.items() if not _traits(c).get("memory_maps")}
    loads = [c for f in eager if (c := candidate(f, [eager[f].get("load_s")]))]
    if not loads:
        return not_measured(_command(model, size))
    lazy = sorted(set(ok) - set(eager))
    return ranked(loads, "s", "faster", "to load (warm, in process)",
                  "start and first prediction not measured"
                  + (f"; {', '.join(lazy)} not ranked (lazy load)" if lazy else ""))


def memory(sharing: list[dict], model: str, size: str) -> Answer:
    ok = [c for c in sharing if c["status"] == "ok" and c.get("total_pss_bytes") is not None]
    command = _command(model, size, "--experiments sharing")
    if not ok:
        failed = [c for c in sharing if c["status"] != "ok"]
        return not_measured(command, "; ".join(f"{c['format']}: {c['status']}" for c in failed))
    n = max(c.get("processes", 0) for c in ok)
    cands = [Candidate(c["format"], c["total_pss_bytes"], c["total_pss_bytes"],
                       c["total_pss_bytes"]) for c in ok if c.get("processes") == n]
    return ranked(cands, "B", "less", f"PSS for {n} processes")


def smallest(rt: dict[str, dict], model: str, size: str) -> Answer:
    cands = [Candidate(f, c["file_bytes"], c["file_bytes"], c["file_bytes"])
             for f, c in rt.items() if c["status"] == "ok" and c.get("file_bytes")]
    if not cands:
        return not_measured(_command(model, size))
    return ranked(cands, "B", "smaller")


def _silent_wrong(robustness: list[dict], fmt: str) -> str:
    for c in robustness:
        if c["format"] == fmt and c["status"] == "ok":
            wrong = (c.get("outcomes") or {}).get("silent_wrong", 0)
            if wrong:
                return f"{wrong} of {c['trials']} damaged files loaded silently wrong"
    return ""


def untrusted(rt: dict[str, dict], security: list[dict], robustness: list[dict], model: str,
              size: str) -> Answer:
    """A format whose loader runs no code from the file: the crafted-file test's outcome when
    it ran, otherwise the format's declared trait. The fastest such load wins."""
    crafted = {c["format"]: c["code_executed"] for c in security
               if c["status"] == "ok" and not c.get("variant") and "code_executed" in c}

    def safe(fmt: str, cell: dict) -> bool:
        if fmt in crafted:
            return not crafted[fmt]
        return not _traits(cell).get("executes_code_on_load", True)

    measured = {f: c for f, c in rt.items() if f in FORMATS and safe(f, c)}
    if not measured:
        return not_measured(_command(model, size, "--formats skops,onnx"))
    ok = {f: c for f, c in measured.items() if c["status"] == "ok"}
    if not ok:
        return Answer(note="; ".join(short_reason(c) for c in measured.values()),
                      verdict="none")
    exact = {f: c for f, c in ok.items() if c.get("roundtrip_equal") is not False} or ok
    cands = [c for f in exact if (c := candidate(f, [exact[f].get("load_s")]))]
    if not cands:
        return not_measured(_command(model, size, "--formats skops,onnx"))
    answer = ranked(cands, "s", "faster", "to load")
    best = answer.winners[0]
    notes = []
    trusted = ok[best].get("skops_untrusted_types") or []
    if trusted:
        notes.append(f"after trusting {len(trusted)} listed type(s)")
    notes.append("a crafted file ran no code" if best in crafted else
                 "runs no code by design (crafted files not tried)")
    agreement = ok[best].get("label_agreement")
    if agreement is not None and agreement < 1:
        notes.append(f"predicts the same label for {Num(agreement, '%').text()} of rows")
    if wrong := _silent_wrong(robustness, best):
        notes.append(wrong)
    unsafe = [f for f, c in rt.items() if c["status"] == "ok" and f not in measured]
    pickle_like = [c for f in unsafe if (c := candidate(f, [rt[f].get("load_s")]))
                   and not _traits(rt[f]).get("memory_maps")]
    if pickle_like:
        fastest = min(pickle_like, key=lambda c: c.value)
        notes.append(f"{Num(answer.figure.value / fastest.value, 'x').text()} the load time of "
                     f"{fastest.fmt}, which runs code on load")
    return Answer(answer.winners, answer.figure, answer.figure_note, answer.margin,
                  "; ".join(notes), verdict=answer.verdict)


def no_python(rt: dict[str, dict], footprint: list[dict], model: str, size: str) -> Answer:
    """Only ONNX serves without Python objects; the figure is how faithful it is."""
    onnx = rt.get("onnx")
    command = _command(model, size, "--formats onnx --experiments roundtrip,footprint")
    if onnx is None:
        return not_measured(command)
    if onnx["status"] != "ok":
        return Answer(note=short_reason(onnx), verdict="none")
    figure, figure_note, notes = None, "", []
    if onnx.get("label_agreement") is not None:
        figure, figure_note = Num(onnx["label_agreement"], "%"), "of labels agree"
        if onnx.get("tied_rows") and onnx.get("label_agreement_untied") is not None:
            notes.append(f"{Num(onnx['label_agreement_untied'], '%').text()} on the rows "
                         f"without a vote tie ({onnx['tied_rows']} tied)")
    elif onnx.get("prediction_max_rel_diff") is not None:
        figure, figure_note = Num(onnx["prediction_max_rel_diff"]), "max relative difference"
    margin = ""
    for cell in footprint:
        o, s = cell.get("onnx_server") or {}, cell.get("sklearn_server") or {}
        rss_o, rss_s = o.get("rss_after_predict_bytes"), s.get("rss_after_predict_bytes")
        if cell["status"] == "ok" and rss_o and rss_s:
            margin = (f"a server holds {Num(rss_o, 'B').text()}, "
                      f"{Num(rss_s / rss_o, 'x').text()} less than scikit-learn's"
                      if rss_o <= rss_s else
                      f"a server holds {Num(rss_o, 'B').text()}, "
                      f"{Num(rss_o / rss_s, 'x').text()} more than scikit-learn's")
    if not margin:
        notes.append("server memory not measured (--experiments footprint)")
    return Answer(("onnx",), figure, figure_note, margin, "; ".join(notes))


# --------------------------------------------------------------------------- verdict

def verdict(cells: list[dict]) -> list[VerdictRow]:
    """One row per (model, size) of one machine's cells, in the order the cells name them."""
    by_exp: dict[str, dict[tuple[str, str], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        by_exp[cell["experiment"]][(cell["model"], cell["size"])].append(cell)
    security = [c for found in by_exp["security"].values() for c in found]
    rows = []
    for key in dict.fromkeys((c["model"], c["size"]) for c in cells):
        if not any(key in by_exp[e] for e in MODEL_EXPERIMENTS):
            continue  # the security experiment's crafted payload is not a model to choose for
        model, size = key
        rt = {c["format"]: c for c in by_exp["roundtrip"].get(key, [])}
        robustness = by_exp["robustness"].get(key, [])
        rows.append(VerdictRow(model, size, {
            "serve": serve(rt, model, size),
            "memory": memory(by_exp["sharing"].get(key, []), model, size),
            "size": smallest(rt, model, size),
            "untrusted": untrusted(rt, security, robustness, model, size),
            "no_python": no_python(rt, by_exp["footprint"].get(key, []), model, size),
        }))
    return rows


def render_terminal(rows: list[VerdictRow], console=None, title: str = "verdict") -> None:
    """Print the verdict as a rich table: one row per model, a column per need."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console(width=None if Console().is_terminal else 200)
    table = Table("model", *NEEDS.values(), title=title, show_lines=True)
    style = {"win": "bold green", "tie": "bold yellow", "none": "bold red",
             "not measured": "dim"}
    for row in rows:
        cells = []
        for need in NEEDS:
            answer = row.answers[need]
            text = Text(answer.headline(), style=style[answer.verdict])
            rest = answer.text()[len(answer.headline()):].lstrip(" —;")
            if rest:
                text.append("\n" + rest)
            cells.append(text)
        table.add_row(row.label, *cells)
    console.print(table)
