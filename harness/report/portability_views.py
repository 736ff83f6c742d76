"""The portability matrix: what happened to each model's file on another CPU architecture.

It opens with the exceptions, one sentence each, then one table per direction (models x
formats). Times measured under emulation are shown apart and never set beside native ones:
they are the emulator's, not the CPU's.
"""

from __future__ import annotations

from typing import Any

from persistbench.report.blocks import Block, Paragraph, Table, view
from persistbench.report.values import Hover, Num, median
from persistbench.results.vocabulary import PORTABILITY_OUTCOMES, PORTABILITY_TOLERANCE

FINE = ("identical", "within-tolerance")
PHRASES = {"error-load": "fails to load", "error-predict": "loads but fails at the first predict",
           "crash": "crashes the loading process", "differs": "predicts differently",
           "differ": "loads with changed parameters"}


def _cells(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c.get("experiment") == "portability"]


def label(cell: dict) -> str:
    """The outcome, or the status in brackets for a cell that was not measured."""
    return cell["outcome"] if cell["status"] == "ok" else f"[{cell['status']}]"


def _trouble(cell: dict) -> str | None:
    """What went wrong with one cell, as PHRASES names it; None when nothing did."""
    if cell["status"] != "ok":
        return None
    if cell["outcome"] not in FINE:
        return cell["outcome"]
    return "differ" if cell.get("parameters") == "differ" else None


def _message(cell: dict) -> str:
    if cell.get("message"):
        return " ".join(str(cell["message"]).split())[:160]
    if cell.get("parameters_difference"):
        return str(cell["parameters_difference"])[:160]
    return f"largest difference {cell.get('max_abs_diff')}"


def _cpu(cell: dict) -> str:
    facts = [f"{cell['loaded_pointer_bits']}-bit" if cell.get("loaded_pointer_bits") else "",
             f"{cell['loaded_byteorder']}-endian" if cell.get("loaded_byteorder") else ""]
    return ", ".join(f for f in facts if f)


def exceptions(cells: list[dict]) -> list[str]:
    """One sentence per (model, what went wrong, message): where, and with which formats
    it did and did not happen."""
    cells = _cells(cells)
    groups: dict[tuple[str, str, str], dict[str, set]] = {}
    for c in cells:
        trouble = _trouble(c)
        if trouble:
            group = groups.setdefault((c["model"], trouble, _message(c)),
                                      {"formats": set(), "directions": set(), "cpus": set()})
            group["formats"].add(c["format"])
            group["directions"].add(c["variant"].replace("->", "→"))
            group["cpus"].add(_cpu(c))
    sentences = []
    for (model, trouble, message), g in groups.items():
        tried = {c["format"] for c in cells if c["model"] == model and c["status"] == "ok"
                 and c["variant"].replace("->", "→") in g["directions"]}
        others = sorted(tried - g["formats"])
        formats = ("every format" if not others else
                   ", ".join(sorted(g["formats"])) + f" (not {', '.join(others)})")
        cpus = "; ".join(sorted(c for c in g["cpus"] if c))
        sentences.append(f"{model} {PHRASES[trouble]} {', '.join(sorted(g['directions']))}"
                         f"{f' ({cpus})' if cpus else ''} with {formats}: {message}.")
    return sorted(sentences)


def _detail(cell: dict) -> str:
    versions = cell.get("loaded_versions") or {}
    how = cell.get("loaded_emulator") or cell.get("loaded_route")
    where = f"loaded on {cell.get('loaded_on')} ({cell.get('loaded_machine')}, {how})"
    said = _message(cell) if _trouble(cell) else f"parameters {cell.get('parameters')}"
    return (f"{label(cell)}; {said}; {where}; scikit-learn {versions.get('scikit-learn')}, "
            f"numpy {versions.get('numpy')}")


def matrix(cells: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """direction -> model -> format -> cell."""
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for c in _cells(cells):
        out.setdefault(c["variant"], {}).setdefault(c["model"], {})[c["format"]] = c
    return out


def _direction(variant: str) -> str:
    """The architectures of a direction, without the stacks: "amd64→arm64"."""
    saved, loaded = variant.split("->")
    return f"{saved.split('+')[0]}→{loaded.split('+')[0]}"


def _stack(variant: str) -> str:
    """The loading side's stack, as the direction's key names it (Debian's when unnamed)."""
    _, _, stack = variant.split("->")[1].partition("+")
    return stack or "bookworm"


def _summary(by_format: dict[str, dict]) -> str:
    """One model's outcomes over the formats, in a few words."""
    troubled: dict[str, list[str]] = {}
    for fmt, cell in by_format.items():
        trouble = _trouble(cell) or (None if cell["status"] == "ok" else label(cell))
        if trouble:
            troubled.setdefault(trouble, []).append(fmt)
    if not troubled:
        return "fine with every format"
    fine = [f for f in by_format if not any(f in fs for fs in troubled.values())]
    parts = [f"{t} with {', '.join(fs)}" for t, fs in troubled.items()]
    return "; ".join(parts + ([f"fine with {', '.join(fine)}"] if fine else []))


def stacks(cells: list[dict]) -> list[Table]:
    """Per pair of architectures measured with more than one stack (Debian's and the
    current wheels), the stacks side by side: rows models, one column per stack."""
    grouped: dict[str, dict[str, dict[str, dict[str, dict]]]] = {}
    versions: dict[str, str] = {}
    for c in _cells(cells):
        stack = _stack(c["variant"])
        grouped.setdefault(_direction(c["variant"]), {}).setdefault(stack, {}) \
            .setdefault(c["model"], {})[c["format"]] = c
        found = (c.get("loaded_versions") or {}).get("scikit-learn")
        if found:
            versions.setdefault(stack, found)
    tables = []
    for direction, by_stack in grouped.items():
        if len(by_stack) < 2:
            continue
        models = list(dict.fromkeys(m for by_model in by_stack.values() for m in by_model))
        rows = [[model, *(_summary(by_model[model]) if model in by_model else None
                          for by_model in by_stack.values())] for model in models]
        columns = [f"{stack} (scikit-learn {versions.get(stack, '?')})" for stack in by_stack]
        tables.append(Table(f"{direction}: each stack's outcome, both sides on the same "
                            "versions", ["model", *columns], rows))
    return tables


def _mark(cell: dict) -> str:
    text = label(cell)
    return text + (" · params ≠" if cell.get("parameters") == "differ" else "")


def _timings(cells: list[dict]) -> Table:
    rows = []
    for direction, models in matrix(cells).items():
        done = [c for m in models.values() for c in m.values()
                if c.get("load_once_s") is not None]
        if done:
            emulated = any(c.get("emulated") for c in done)
            rows.append([direction.replace("->", "→"), "emulated" if emulated else "native",
                         Num(median([c["load_once_s"] for c in done]), "s"),
                         Num(median([c["predict_once_s"] for c in done
                                     if c.get("predict_once_s")]), "s"), Num(len(done))])
    return Table("load and first predict on the loading side (median over models and formats)",
                 ["direction", "how it ran", "load", "first predict", "files"], rows,
                 note="Emulated times are the emulator's, not the CPU's: never compare them "
                      "with native ones, or with each other across architectures.")


@view("portability", "Portability: saved on one CPU architecture, loaded on another")
def portability_view(cells: list[dict], machine: dict) -> list[Block]:
    found = exceptions(cells)
    blocks: list[Block] = [Paragraph(
        "Exceptions found: " + (" ".join(found) if found else
                                "none: every file loaded and predicted within tolerance."))]
    blocks.append(Paragraph(
        "Each model is saved in each format on one architecture's Debian tree and loaded, "
        "then predicted once, on another holding the same library versions. Outcomes: "
        f"{', '.join(PORTABILITY_OUTCOMES)}; within tolerance means equal labels and every "
        f"float within {PORTABILITY_TOLERANCE:g} × max(1, |value|). 'params ≠' marks a model "
        "whose stored arrays changed (after normalising byte order and integer width). "
        "Hover a cell for the message, the versions and how the loading side ran."))
    blocks.extend(stacks(cells))
    for direction, models in matrix(cells).items():
        formats = list(dict.fromkeys(f for m in models.values() for f in m))
        rows: list[list[Any]] = []
        for model, by_format in models.items():
            rows.append([model, *[Hover(_mark(c), _detail(c),
                                        bad=bool(_trouble(c)) or c["status"] == "error")
                                  if (c := by_format.get(f)) else None for f in formats]])
        blocks.append(Table(f"{direction.replace('->', ' → ')}: rows models, columns formats",
                            ["model", *formats], rows))
    blocks.append(_timings(cells))
    return blocks


def print_matrix(data: dict, console=None) -> None:
    """The trees, the exceptions, then one table per direction in the terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    console = console or Console()
    trees = data["run"].get("portability_trees") or []
    if trees:
        table = RichTable("tree", "route", "python", "scikit-learn", "numpy", "scipy", "joblib",
                          "cloudpickle", title="portability: trees")
        for t in trees:
            p = t.get("packages") or {}
            table.add_row(t.get("key") or t["arch"],
                          escape(t.get("emulator") or t.get("route") or "-"),
                          t.get("python_version") or "-",
                          *(p.get(k, "-") for k in ("scikit-learn", "numpy", "scipy",
                                                    "joblib", "cloudpickle")))
        console.print(table)
    for sentence in exceptions(data["cells"]) or ["no exception: every file loaded and "
                                                  "predicted within tolerance"]:
        console.print(escape(f"- {sentence}"))
    for side_by_side in stacks(data["cells"]):
        table = RichTable(*side_by_side.columns, title=f"portability: {side_by_side.title}")
        for row in side_by_side.rows:
            table.add_row(*(escape(v or "-") for v in row))
        console.print(table)
    for direction, models in matrix(data["cells"]).items():
        formats = list(dict.fromkeys(f for m in models.values() for f in m))
        table = RichTable("model", *formats, title=f"portability: {direction}")
        for model, by_format in models.items():
            table.add_row(model, *(escape(_mark(c)) if (c := by_format.get(f)) else "-"
                                   for f in formats))
        console.print(table)
