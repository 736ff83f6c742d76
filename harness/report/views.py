"""One section per experiment: tables and figures built from its cells.

Adding a view for an experiment is one function:

    @view("myexperiment", "Title shown in the report")
    def _myexperiment(cells: list[dict], machine: dict) -> list[Block]:
        return [Table(...), Figure(...), Paragraph(...)]

Experiments without a view get `generic_view`: a table of every cell with its status,
reason and scalar measures, so nothing measured is ever missing from the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.experiments import compat
from harness.experiments.roundtrip import START_REPEATS
from harness.report import charts
from harness.report.values import Hover, Num, median


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]  # Num, str, bool or None per column
    note: str = ""


@dataclass
class Figure:
    title: str
    svg: str
    caption: str = ""


@dataclass
class Paragraph:
    text: str


Block = Table | Figure | Paragraph
View = Callable[[list[dict], dict], list[Block]]


@dataclass
class Section:
    experiment: str
    title: str
    blocks: list[Block] = field(default_factory=list)


VIEWS: dict[str, tuple[str, View]] = {}


def view(experiment: str, title: str) -> Callable[[View], View]:
    """Register the section of `experiment` (the documented hook for new experiments)."""

    def register(fn: View) -> View:
        VIEWS[experiment] = (title, fn)
        return fn

    return register


def sections(experiments: dict[str, list[dict]], machine: dict) -> list[Section]:
    out = []
    for name, cells in experiments.items():
        title, fn = VIEWS.get(name, (f"{name} (all cells)", generic_view))
        out.append(Section(name, title, fn(cells, machine)))
    return out


# --------------------------------------------------------------------------- helpers

def figure(title: str, svg: str | None, caption: str = "") -> Block:
    """A chart, or a line saying why it is absent (the cells lack its measurements, as
    asv results with timings only do), so one missing measure never costs the page."""
    if svg is None:
        return Paragraph(f"Not plotted, {title}: no cell has these measurements.")
    return Figure(title, svg, caption)


def row_label(cell: dict) -> str:
    return cell["model"] if cell["size"] == "small" else f"{cell['model']} ({cell['size']})"


def status(cell: dict) -> str:
    return cell["status"] if cell["status"] == "ok" else f"{cell['status']}: {cell['reason']}"


def row_labels(cells: list[dict]) -> list[str]:
    return list(dict.fromkeys(row_label(c) for c in cells))


def grid(cells: list[dict], value: Callable[[dict], float | None]) -> dict[str, list]:
    """{format: [value per row of `row_labels(cells)`]} over the ok cells."""
    rows = row_labels(cells)
    series: dict[str, list] = {}
    for cell in cells:
        if cell["status"] != "ok":
            continue
        series.setdefault(cell["format"], [None] * len(rows))
        series[cell["format"]][rows.index(row_label(cell))] = value(cell)
    return series


def scalar_measures(cell: dict) -> dict[str, Num | str | bool]:
    """Top-level numbers, flags and short texts of a cell; timing dicts give their median."""
    skip = {"cell_id", "experiment", "model", "size", "format", "variant", "status", "reason",
            "elapsed_s"}
    out: dict[str, Num | str | bool] = {}
    for key, value in cell.items():
        if key in skip or "samples" in key:
            continue
        unit = "s" if key.endswith("_s") else "B" if key.endswith("_bytes") else \
            "B/s" if key.endswith(("_bps", "_per_s")) else ""
        if isinstance(value, bool) or (isinstance(value, str) and len(value) <= 80):
            out[key] = value
        elif isinstance(value, dict) and "median" in value:
            out[key] = Num(value["median"], unit)
        elif isinstance(value, int | float):
            out[key] = Num(value, unit)
    return out


def generic_view(cells: list[dict], machine: dict) -> list[Block]:
    measures = [scalar_measures(c) for c in cells]
    keys = list(dict.fromkeys(k for m in measures for k in m))
    rows = [[c["model"], c["size"], c["format"], c.get("variant", ""), status(c),
             *[m.get(k) for k in keys]] for c, m in zip(cells, measures, strict=True)]
    return [Table("cells", ["model", "size", "format", "variant", "status", *keys], rows,
                  note="Timings are medians; hover a number for its exact value.")]


FIDELITY_COLUMNS = ["label agreement", "tied rows", "label agreement, untied rows",
                    "max |Δ probability|", "max |Δ prediction|", "max relative Δ prediction"]


def fidelity(cell: dict) -> list[Num]:
    """Classifiers: label agreement (all rows, and rows whose top two probabilities are not
    tied, where a label is no tie-break) and probability drift; regressors: value drift."""
    return [Num(cell.get("label_agreement"), "%"), Num(cell.get("tied_rows")),
            Num(cell.get("label_agreement_untied"), "%"), Num(cell.get("proba_max_abs_diff")),
            Num(cell.get("prediction_max_abs_diff")), Num(cell.get("prediction_max_rel_diff"))]


def _ok(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c["status"] == "ok"]


# ------------------------------------------------------------------------ roundtrip

def _span(counts: list[int]) -> str:
    return str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]}"


def _start_counts(cells: list[dict]) -> list[Block]:
    """Say how many fresh interpreters each server-start median stands on: the quick
    profile starts one per cell and pass, so its figures are single starts, not medians."""
    counts = sorted({c["start_load_s"]["n"] for c in cells
                     if isinstance(c.get("start_load_s"), dict)})
    skipped = sorted({c["start_reason"] for c in cells if c.get("start_reason")})
    out: list[Block] = [Paragraph(f"Server start not measured: {r}") for r in skipped]
    if counts and counts[0] < START_REPEATS:
        out.append(Paragraph(
            f"Server start columns stand on {_span(counts)} "
            f"start(s) per cell, fewer than the {START_REPEATS} a median needs: "
            f"run with --starts {START_REPEATS} or --runs {START_REPEATS} "
            "(the quick profile starts one interpreter per cell and pass)."))
    return out


@view("roundtrip", "Round trip: dump, load, size, memory, fidelity")
def roundtrip_view(cells: list[dict], machine: dict) -> list[Block]:
    blocks: list[Block] = [Table(
        "per model and format (medians)",
        ["model", "size", "format", "status", "file", "dump", "load (warm)", "first load",
         "first predict", "first predict +RSS", "load (cold)", "first predict after cold load",
         "dump +RSS", "load +RSS", "server start: imports", "server start: load",
         "server start: first predict", "predictions equal"],
        [[c["model"], c["size"], c["format"], status(c), Num(c.get("file_bytes"), "B"),
          Num(median(c.get("dump_s")), "s"), Num(median(c.get("load_s")), "s"),
          Num(c.get("load_first_s"), "s"), Num(median(c.get("first_predict_s")), "s"),
          Num(c.get("first_predict_rss_bytes"), "B"),
          Num(median(c.get("load_cold_s")), "s"),
          Num(median(c.get("load_cold_first_predict_s")), "s"),
          Num(c.get("dump_peak_rss_bytes"), "B"), Num(c.get("load_peak_rss_bytes"), "B"),
          Num(median(c.get("start_import_s")), "s"), Num(median(c.get("start_load_s")), "s"),
          Num(median(c.get("start_first_predict_s")), "s"),
          c.get("roundtrip_equal")] for c in cells],
        note="+RSS is the phase's peak resident memory above what the process held before it; "
             "first predict +RSS is what one row's predict left resident after a warm load "
             "(pages a memory map deferred). Load (warm) is the steady state in a process "
             "that already imported the libraries; first load is that process's first; "
             "server start runs a new interpreter that imports what the file needs, loads "
             "it and predicts one row (imports are only in their own column).")]
    not_cold = sorted({c["load_cold_reason"] for c in cells
                       if c.get("load_cold_status") == "unsupported"})
    blocks += [Paragraph(f"Cold loads not measured: {reason}") for reason in not_cold]
    blocks += _start_counts(cells)
    if not _ok(cells):
        return [*blocks, Paragraph("No round-trip cell succeeded, so there is nothing to plot.")]

    rows = row_labels(cells)
    panels = [(title, grid(cells, lambda c, k=key: median(c.get(k))))
              for key, title in (("dump_s", "dump"), ("load_s", "load, warm cache"),
                                 ("load_cold_s", "load, cold cache"))]
    blocks.append(figure("dump and load time per format (median, log scale)",
                         charts.dot_panels(rows, panels, "s")))
    sizes = grid(cells, lambda c: c.get("file_bytes"))
    blocks.append(figure("file size per format (log scale)",
                         charts.dot_panels(rows, [("file size", sizes)], "B")))
    panels = [(title, grid(cells, lambda c, k=key: c.get(k)))
              for key, title in (("dump_peak_rss_bytes", "dump"),
                                 ("load_peak_rss_bytes", "load, warm"),
                                 ("load_cold_peak_rss_bytes", "load, cold"))]
    blocks.append(figure(
        "peak RSS above the phase's start, per phase (symmetric log scale)",
        charts.dot_panels(rows, panels, "B", scale="symlog", linthresh=2**16),
        "Zero means the phase never raised the process's high-water mark."))

    groups: dict[str, list] = {}
    for c in _ok(cells):
        load = median(c.get("load_s"))
        if c.get("file_bytes") and load:
            groups.setdefault(row_label(c), []).append((c["format"], c["file_bytes"], load))
    blocks.append(figure(
        "file size against warm load time, Pareto front dashed",
        charts.pareto_grid(groups, "B", "s", "file size", "load time"),
        "A format on the front is not beaten on both size and load time by any other."))
    blocks += _throughput(cells, (machine.get("calibration") or {}))
    blocks.append(Table(
        "fidelity: does the loaded model predict what the original did?",
        ["model", "size", "format", "predictions equal", *FIDELITY_COLUMNS],
        [[c["model"], c["size"], c["format"], c.get("roundtrip_equal"), *fidelity(c)]
         for c in _ok(cells)],
        note="Python formats must give bitwise-equal outputs; ONNX computes in float32, so "
             "its regression values count as equal within a relative 1e-4."))
    return blocks


def _throughput(cells: list[dict], calibration: dict) -> list[Block]:
    """Load speed as a share of what this machine's page cache and disk deliver."""
    warm_bw = calibration.get("page_cache_read_bps")
    cold_bw = calibration.get("cold_read_bps")
    if not warm_bw:
        return [Paragraph("These results hold no bandwidth calibration (asv and "
                          "pytest-benchmark record none; persistbench run --no-calibrate skips "
                          "it), so load throughput cannot be read as a share of the machine's "
                          "limits.")]

    def share(cell: dict, key: str, bandwidth: float | None) -> float | None:
        seconds = median(cell.get(key))
        if not (seconds and bandwidth and cell.get("file_bytes")):
            return None
        return cell["file_bytes"] / seconds / bandwidth

    rows = row_labels(cells)
    warm = grid(cells, lambda c: share(c, "load_s", warm_bw))
    panels = [("warm load / page-cache read bandwidth", warm)]
    if cold_bw:
        panels.append(("cold load / cold read bandwidth",
                       grid(cells, lambda c: share(c, "load_cold_s", cold_bw))))
    return [figure(
        "load throughput (file bytes / load time) as a fraction of calibrated bandwidth",
        charts.dot_panels(rows, panels, "%"),
        f"Calibration: page-cache read {Num(warm_bw, 'B/s')}, cold read {Num(cold_bw, 'B/s')}."
        " Small files are dominated by fixed costs, so their share is tiny.")]


# -------------------------------------------------------------------------- sharing

@view("sharing", "Sharing one model between N processes (memory mapping)")
def sharing_view(cells: list[dict], machine: dict) -> list[Block]:
    table = Table(
        "memory of N processes that loaded the model and predicted once",
        ["model", "size", "format", "variant", "status", "processes", "file", "total PSS",
         "total USS", "total RSS", "shared", "model PSS", "median load"],
        [[c["model"], c["size"], c["format"], c.get("variant", ""), status(c),
          Num(c.get("processes")), Num(c.get("file_bytes"), "B"),
          Num(c.get("total_pss_bytes"), "B"), Num(c.get("total_uss_bytes"), "B"),
          Num(c.get("total_rss_bytes"), "B"), Num(c.get("shared_bytes"), "B"),
          Num(c.get("model_pss_bytes"), "B"), Num(median(c.get("load_s")), "s")]
         for c in cells],
        note="PSS splits each shared page among the processes that map it; USS counts "
             "private pages only.")
    ok = [c for c in _ok(cells) if c.get("total_pss_bytes") is not None]
    if not ok:
        return [table]

    def label(c: dict) -> str:
        return f"{row_label(c)}, {c.get('processes')} processes"

    rows = list(dict.fromkeys(label(c) for c in ok))
    panels = []
    for key, title in (("total_pss_bytes", "total PSS"), ("model_pss_bytes", "model PSS "
                                                          "(beyond idle servers)"),
                       ("total_uss_bytes", "total USS (private)")):
        series: dict[str, list] = {}
        for c in ok:
            series.setdefault(c["format"], [None] * len(rows))[rows.index(label(c))] = c.get(key)
        panels.append((title, series))
    return [table, figure("memory of all serving processes together, per format",
                          charts.dot_panels(rows, panels, "B", scale="linear"))]


# ------------------------------------------------------------------------ inference

def speedups(cell: dict) -> dict[str, list[tuple[int, float, float, float]]]:
    """{method: [(batch, sklearn median, onnxruntime median, speedup)]} of one cell."""
    by_key = {(p["runtime"], p["method"], p["batch_size"]): p["median_s"]
              for p in cell.get("latency") or [] if p.get("median_s")}
    out: dict[str, list] = {}
    for (runtime, method, batch), skl in sorted(by_key.items(), key=lambda kv: kv[0][2]):
        ort = by_key.get(("onnxruntime", method, batch))
        if runtime == "sklearn" and ort:
            out.setdefault(method, []).append((batch, skl, ort, skl / ort))
    return out


def _threads(value) -> Num | str | None:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    return Num(value) if value is not None else None


@view("inference", "ONNX Runtime against scikit-learn")
def inference_view(cells: list[dict], machine: dict) -> list[Block]:
    blocks: list[Block] = [Table(
        "conversion and fidelity",
        ["model", "size", "status", "convert", "ONNX file", "session create", "threads",
         *FIDELITY_COLUMNS],
        [[c["model"], c["size"], status(c), Num(median(c.get("convert_s")), "s"),
          Num(c.get("onnx_file_bytes"), "B"), Num(median(c.get("session_create_s")), "s"),
          _threads(c.get("threads")), *fidelity(c)] for c in cells])]
    rows, groups = [], {}
    for c in _ok(cells):
        for method, pts in speedups(c).items():
            for batch, skl, ort, speed in pts:
                rows.append([c["model"], c["size"], method, Num(batch), Num(skl, "s"),
                             Num(ort, "s"), Num(speed, "x")])
            groups.setdefault(row_label(c), {})[method] = [(b, s) for b, _, _, s in pts]
    if rows:
        blocks.append(Table("latency per batch (medians)",
                            ["model", "size", "method", "batch", "scikit-learn", "onnxruntime",
                             "speedup"], rows,
                            note="speedup = scikit-learn time / onnxruntime time; above 1, "
                                 "ONNX Runtime is faster."))
        blocks.append(figure("ONNX Runtime speedup against batch size (above 1: faster)",
                             charts.line_grid(groups, "batch size", "speedup", "x", logy=True,
                                              reference=1.0)))
    return blocks


# ------------------------------------------------------------------------ footprint

SERVERS = ("onnx_server", "sklearn_server")


@view("footprint", "Serving footprint: a fresh process that loads and predicts once")
def footprint_view(cells: list[dict], machine: dict) -> list[Block]:
    rows = []
    for c in cells:
        if c["status"] != "ok":
            rows.append([c["model"], c["size"], status(c), "", None, None, None, None])
        for server in SERVERS:
            s = c.get(server) or {}
            if s:
                rows.append([c["model"], c["size"], "ok", server,
                             Num(median(s.get("import_s")), "s"),
                             Num(median(s.get("load_s")), "s"),
                             Num(median(s.get("first_predict_s")), "s"),
                             Num(s.get("rss_after_predict_bytes"), "B")])
    return [Table("server start-up and memory",
                  ["model", "size", "status", "server", "import", "load", "first predict",
                   "RSS after predict"], rows)]


# --------------------------------------------------------------------------- compat

def _outcome_order(label: str) -> tuple:
    """Measured outcomes in their documented order, then the unmeasured ([status])."""
    known = label in compat.OUTCOMES
    return (not known, compat.OUTCOMES.index(label) if known else label)


def _outcome_counts(counts: dict[str, int]) -> str:
    """"ok 9 · warning 1", the text of one matrix cell."""
    return " · ".join(f"{k} {counts[k]}" for k in sorted(counts, key=_outcome_order))


def _compat_detail(cell: dict) -> str:
    """One line per model for the hover of a matrix cell: what B said about A's file."""
    label = compat.outcome_label(cell)
    if cell["status"] != "ok":
        said = cell.get("reason", "")
    elif label in ("error", "crash"):
        said = f"{cell.get('failed_phase') or ''}: {cell.get('message') or ''}"
    elif label == "differs":
        said = f"label agreement {Num(cell.get('label_agreement'), '%')}"
        if cell.get("warning_class"):
            said += f"; {cell['warning_class']}: {cell.get('warning_text') or ''}"
    elif label == "warning":
        said = f"{cell.get('warning_class')}: {cell.get('warning_text') or ''}"
    else:
        said = ""
    line = f"{row_label(cell)}: {label}"
    return f"{line} — {' '.join(said.split())[:200]}" if said.strip(" :") else line


@view("compat", "Version skew: saved with one scikit-learn, loaded with another")
def compat_view(cells: list[dict], machine: dict) -> list[Block]:
    matrix = compat.outcome_matrix(cells)
    details: dict[tuple[str, str, str], list[str]] = {}
    for c in cells:
        saved, loaded = c["variant"].split("->")
        details.setdefault((c["format"], saved, loaded), []).append(_compat_detail(c))
    trouble = {"differs", "error", "crash", "[error]"}
    totals: dict[str, dict[str, int]] = {}
    blocks: list[Block] = [Paragraph(
        "Each model is saved with scikit-learn A (rows) and loaded with B (columns). A cell "
        "counts its models per outcome: ok, warning (loaded, predicts the same, but warned), "
        "differs (predicts differently from A), error (the load raised), crash (the process "
        "died); [unsupported] and [error] count cells that could not be measured (A cannot "
        "save the model in that format, or the environment or harness failed). Hover a cell "
        "for each model's outcome and message.")]
    for fmt, pairs in matrix.items():
        versions = list(dict.fromkeys(v for pair in pairs for v in pair))
        rows = []
        for saved in versions:
            row: list[Any] = [saved]
            for loaded in versions:
                counts = pairs.get((saved, loaded), {})
                row.append(Hover(_outcome_counts(counts),
                                 "\n".join(details.get((fmt, saved, loaded), [])),
                                 bad=bool(trouble & set(counts))) if counts else None)
            rows.append(row)
        for counts in pairs.values():
            for key, n in counts.items():
                totals.setdefault(fmt, {}).setdefault(key, 0)
                totals[fmt][key] += n
        blocks.append(Table(f"{fmt}: rows saved with, columns loaded with",
                            ["saved with \\ loaded with", *versions], rows))
    keys = sorted({k for t in totals.values() for k in t}, key=_outcome_order)
    blocks.insert(1, Table(
        "outcomes per format (all models and version pairs)", ["format", *keys, "cells"],
        [[fmt, *[Num(t.get(k, 0)) for k in keys], Num(sum(t.values()))]
         for fmt, t in totals.items()]))
    return blocks


# ------------------------------------------------------------------------- security

def _events(events: list[dict] | None) -> Hover | None:
    """Audit events as "name ×n" counts, each event's detail on hover."""
    if events is None:
        return None
    counts = Counter(e["event"] for e in events)
    short = ", ".join(f"{name} ×{n}" for name, n in counts.items()) or "none"
    return Hover(short, "\n".join(f"{e['event']}: {e['detail']}" for e in events) or
                 "no audit event fired while loading")


def _code_ran(ran: bool | None, imports: list[str] | None = None) -> Hover | None:
    if ran is None:
        return None
    detail = "imports resolved by the loader: " + (", ".join(imports or []) or "none")
    return Hover("yes: the canary was written" if ran else "no", detail, bad=ran)


def _also_checked(cell: dict) -> Hover | None:
    """The careless skops load and the ONNX escaping external-data path."""
    if "code_executed_if_listed_types_trusted" in cell:
        ran = cell["code_executed_if_listed_types_trusted"]
        return Hover(f"trusting the listed types: {cell['loader_outcome_if_listed_types_trusted']}"
                     f", code ran: {'yes' if ran else 'no'}",
                     "listed untrusted types: " +
                     ", ".join(cell.get("trusting_listed_types") or []), bad=ran)
    if "read_outside_folder" in cell:
        read = cell["read_outside_folder"]
        return Hover(f"read data outside its folder: {'yes' if read else 'no'}",
                     "the model's external-data path points outside its directory", bad=read)
    return None


def _static_audit(cell: dict) -> Hover | None:
    if "static_audit_exit_status" not in cell:
        return None
    findings = cell.get("static_audit_findings") or []
    text = {0: "clean", 1: f"flagged ({len(findings)})", 2: "unreadable"}.get(
        cell["static_audit_exit_status"], f"exit {cell['static_audit_exit_status']}")
    return Hover(text, "\n".join(findings) or "nothing flagged",
                 bad=not cell.get("static_audit_flagged"))


@view("security", "Security: does loading a crafted file run its code?")
def security_view(cells: list[dict], machine: dict) -> list[Block]:
    return [Table(
        "crafted files, one per format",
        ["format", "variant", "status", "payload", "code executed on load", "loader outcome",
         "loader message", "static audit (persistbench audit)", "audit events while loading",
         "also checked"],
        [[c["format"], c.get("variant", ""), status(c), c.get("payload"),
          _code_ran(c.get("code_executed"), c.get("imports_resolved")),
          c.get("loader_outcome"), c.get("loader_message"), _static_audit(c),
          _events(c.get("audit_events")), _also_checked(c)] for c in cells],
        note="Each file writes a harmless canary file if its loader executes code; it is "
             "loaded in a child process under Python audit hooks, after the static audit "
             "read it without loading. A static audit in red did not flag the file. Hover "
             "for imports, findings and events.")]


# ----------------------------------------------------------------------- robustness

ROBUSTNESS_COLUMNS = {"clean_exception": "clean exception", "silent_wrong": "silent wrong load",
                      "loaded_identical": "loaded identical", "crash": "crash", "hang": "hang"}


def _examples(cell: dict) -> Hover | None:
    examples = cell.get("examples") or []
    if not examples:
        return None
    return Hover(str(len(examples)), "\n".join(
        f"{e['kind']}, {e['corruption']}: {e['outcome']} — {e['detail']}" for e in examples))


@view("robustness", "Robustness: loading truncated and bit-flipped files")
def robustness_view(cells: list[dict], machine: dict) -> list[Block]:
    outcomes = list(ROBUSTNESS_COLUMNS)
    per_format: dict[str, dict[str, int]] = {}
    for c in cells:
        total = per_format.setdefault(c["format"], dict.fromkeys(
            ["models", "not measured", "trials", *outcomes], 0))
        if c["status"] != "ok":
            total["not measured"] += 1
            continue
        total["models"] += 1
        total["trials"] += c["trials"]
        for o in outcomes:
            total[o] += c["outcomes"][o]
    labels = [ROBUSTNESS_COLUMNS[o] for o in outcomes]
    return [Table(
        "outcomes per format (summed over models)",
        ["format", "models", "not measured", "trials", *labels],
        [[fmt, *[Num(n) for n in t.values()]] for fmt, t in per_format.items()],
        note="Each trial loads a damaged copy in a child process with a timeout and predicts: "
             "a clean exception is what a loader should do; a silent wrong load predicts "
             "differently without complaint; loaded identical means the damage did not "
             "matter. Cells not measured (the format cannot save the model) are in the "
             "failed-cells list."),
        Table("per model", ["model", "size", "format", "status", "trials", *labels,
                            "examples"],
              [[c["model"], c["size"], c["format"], status(c), Num(c.get("trials")),
                *[Num((c.get("outcomes") or {}).get(o)) for o in outcomes], _examples(c)]
               for c in cells])]
