"""One section per experiment: tables and figures built from its cells.

This module holds the speed and memory views (round trip, sharing, inference, footprint);
`safety_views` the others; `blocks` what they are made of. `sections` is the one entry:
every registered view, or the generic table for an experiment without one.
"""

from __future__ import annotations

import statistics

from persistbench.report import (
    portability_views,  # noqa: F401  (registers its view)
    safety_views,  # noqa: F401  (registers its views)
)
from persistbench.report.blocks import (
    FIDELITY_COLUMNS,
    VIEWS,
    Block,
    Paragraph,
    Section,
    Table,
    _ok,
    chart,
    fidelity,
    figure,
    generic_view,
    grid,
    row_label,
    row_labels,
    status,
    view,
)
from persistbench.report.values import Num, measured, median
from persistbench.results.protocols import (
    PROTOCOLS,
    START_SHARING_ASSUMES,
    floor_of,
    protocol_of,
)
from persistbench.results.vocabulary import START_REPEATS


def sections(experiments: dict[str, list[dict]], machine: dict) -> list[Section]:
    out = []
    for name, cells in experiments.items():
        title, fn = VIEWS.get(name, (f"{name} (all cells)", generic_view))
        out.append(Section(name, title, fn(cells, machine)))
    return out


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
    if any(c.get("protocols", {}).get("start_load_s") for c in cells if counts):
        out.append(Paragraph(START_SHARING_ASSUMES))
    if counts and counts[0] < START_REPEATS:
        out.append(Paragraph(
            f"Server start columns stand on {_span(counts)} "
            f"start(s) per cell, fewer than the {START_REPEATS} a median needs: "
            f"run with --starts {START_REPEATS} or --runs {START_REPEATS} "
            "(the quick profile starts one interpreter per cell and pass)."))
    return out


TIMED_COLUMNS = (("dump", "dump_s"), ("load (warm)", "load_s"), ("first load", "load_first_s"),
                 ("first predict", "first_predict_s"), ("load (cold)", "load_cold_s"),
                 ("first predict after cold load", "load_cold_first_predict_s"),
                 ("dump +RSS", "dump_peak_rss_bytes"), ("load +RSS", "load_peak_rss_bytes"),
                 ("server start: imports", "start_import_s"),
                 ("server start: load", "start_load_s"),
                 ("server start: first predict", "start_first_predict_s"))


def protocol_legend(cells: list[dict]) -> Block:
    """Which protocol each column was measured under, what runs between its samples, and
    the harness's floor under it: the cost of timing an empty phase, measured in the same
    processes (a difference below it is the harness's, not the formats')."""
    rows = []
    for title, key in TIMED_COLUMNS:
        names = sorted({p for c in _ok(cells) if key in c and (p := protocol_of(key, c))})
        for name in names:
            proto = PROTOCOLS[name]
            under = [c for c in _ok(cells) if protocol_of(key, c) == name]
            found = [f for c in under if (f := floor_of(key, c)) is not None]
            rows.append([title, name, proto.situation, "; ".join(proto.between) or "nothing",
                         Num(statistics.median(found) if found else None, "s")])
    return Table("protocols: what each column stands for",
                 ["column", "protocol", "situation", "between samples",
                  "harness floor (median)"], rows,
                 note="The harness floor is the cost of timing an empty phase under the "
                      "protocol, in the same processes as the figures; two formats closer "
                      "than it are a tie in the verdict.")


@view("roundtrip", "Round trip: dump, load, size, memory, fidelity")
def roundtrip_view(cells: list[dict], machine: dict) -> list[Block]:
    blocks: list[Block] = [Table(
        "per model and format (medians; ± is the 95 % interval of the median, n its samples)",
        ["model", "size", "format", "status", "file", "dump", "load (warm)", "first load",
         "first predict", "first predict +RSS", "load (cold)", "first predict after cold load",
         "dump +RSS", "load +RSS", "server start: imports", "server start: load",
         "server start: first predict", "predictions equal"],
        [[c["model"], c["size"], c["format"], status(c), Num(c.get("file_bytes"), "B"),
          measured(c.get("dump_s")), measured(c.get("load_s")),
          Num(c.get("load_first_s"), "s"), Num(median(c.get("first_predict_s")), "s"),
          Num(c.get("first_predict_rss_bytes"), "B"),
          measured(c.get("load_cold_s")),
          Num(median(c.get("load_cold_first_predict_s")), "s"),
          Num(c.get("dump_peak_rss_bytes"), "B"), Num(c.get("load_peak_rss_bytes"), "B"),
          Num(median(c.get("start_import_s")), "s"), Num(median(c.get("start_load_s")), "s"),
          Num(median(c.get("start_first_predict_s")), "s"),
          c.get("roundtrip_equal")] for c in cells],
        note="+RSS is the phase's peak resident memory above what the process held before it; "
             "first predict +RSS is what one row's predict left resident after a warm load "
             "(pages a memory map deferred). Each timing column's protocol (what situation "
             "it stands for, what runs between its samples) is in the table below."),
        protocol_legend(cells)]
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
                         chart("dot_panels", rows, panels, "s")))
    sizes = grid(cells, lambda c: c.get("file_bytes"))
    blocks.append(figure("file size per format (log scale)",
                         chart("dot_panels", rows, [("file size", sizes)], "B")))
    panels = [(title, grid(cells, lambda c, k=key: c.get(k)))
              for key, title in (("dump_peak_rss_bytes", "dump"),
                                 ("load_peak_rss_bytes", "load, warm"),
                                 ("load_cold_peak_rss_bytes", "load, cold"))]
    blocks.append(figure(
        "peak RSS above the phase's start, per phase (symmetric log scale)",
        chart("dot_panels", rows, panels, "B", scale="symlog", linthresh=2**16),
        "Zero means the phase never raised the process's high-water mark."))

    groups: dict[str, list] = {}
    for c in _ok(cells):
        load = median(c.get("load_s"))
        if c.get("file_bytes") and load:
            groups.setdefault(row_label(c), []).append((c["format"], c["file_bytes"], load))
    blocks.append(figure(
        "file size against warm load time, Pareto front dashed",
        chart("pareto_grid", groups, "B", "s", "file size", "load time"),
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
        chart("dot_panels", rows, panels, "%"),
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
                          chart("dot_panels", rows, panels, "B", scale="linear"))]


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
                             chart("line_grid", groups, "batch size", "speedup", "x", logy=True,
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
