"""Report sections of the experiments that ask whether a file can be trusted to load: version
skew (compat), crafted files (security) and damaged files (robustness)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from persistbench.report.blocks import Block, Paragraph, Table, row_label, status, view
from persistbench.report.values import Hover, Num
from persistbench.results import vocabulary as compat

# --------------------------------------------------------------------------- compat

def _outcome_order(label: str) -> tuple:
    """Measured outcomes in their documented order, then the unmeasured ([status])."""
    known = label in compat.COMPAT_OUTCOMES
    return (not known, compat.COMPAT_OUTCOMES.index(label) if known else label)


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
