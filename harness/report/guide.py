"""The decision guide: the seed page's four questions answered per model with measured numbers.

Every sentence is assembled from cells of the results; none is written for a particular
model. A question with no data says what was not measured rather than guessing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from persistbench.report.data import MachineResults
from persistbench.report.values import Num, Sentence, median
from persistbench.report.views import speedups
from persistbench.sources.formats import FORMATS

QUESTIONS = (
    "Do you need the Python object, or only its predictions?",
    "Do you trust the source of the file?",
    "Do load speed, memory and sharing between processes matter?",
    "Could pickle or joblib not persist the model?",
)
MODEL_EXPERIMENTS = ("roundtrip", "sharing", "inference", "footprint", "robustness")
PICKLE_BASED = ("pickle", "pickle-p5", "joblib", "joblib-mmap", "joblib-zlib3", "joblib-lz4",
                "joblib-lzma")


@dataclass
class Pick:
    """The best and worst format for one measure of one model."""

    measure: str
    best: str
    best_value: Num
    worst: str
    worst_value: Num
    count: int  # how many formats had a value
    tied: tuple[str, ...] = ()  # every format whose value reads the same as the best's


@dataclass
class ModelGuide:
    model: str
    size: str
    answers: list[tuple[str, list[Sentence]]] = field(default_factory=list)
    picks: dict[str, Pick] = field(default_factory=dict)
    onnx: str = "not measured"
    failed: int = 0


LOAD_THEN_PREDICT = "load_then_first_predict_s"  # derived: what serving the first row costs

PICK_MEASURES = (  # (key, label, unit)
    (LOAD_THEN_PREDICT, "fastest load + first prediction (warm)", "s"),
    ("load_s", "fastest load (warm)", "s"),
    ("load_cold_s", "fastest load (cold)", "s"),
    ("file_bytes", "smallest file", "B"),
    ("dump_peak_rss_bytes", "lowest dump +RSS", "B"),
    ("load_peak_rss_bytes", "lowest load +RSS", "B"),
)


def _value(cell: dict, key: str) -> float | None:
    """A cell's median of `key`; load + first prediction is summed from its two medians
    (a memory-mapped load is quick because its first prediction does the reading)."""
    if key != LOAD_THEN_PREDICT:
        return median(cell.get(key))
    load, first = median(cell.get("load_s")), median(cell.get("first_predict_s"))
    return None if load is None or first is None else load + first


def pick(cells: dict[str, dict], key: str, unit: str) -> Pick | None:
    """Lowest and highest median of `key` over the ok cells (first format wins a tie)."""
    values = [(fmt, _value(c, key)) for fmt, c in cells.items() if c["status"] == "ok"]
    values = [(f, v) for f, v in values if v is not None]
    if not values:
        return None
    best = min(values, key=lambda fv: fv[1])
    worst = max(values, key=lambda fv: fv[1])
    shown = Num(best[1], unit).text()
    tied = tuple(f for f, v in values if Num(v, unit).text() == shown)
    return Pick(key, best[0], Num(best[1], unit), worst[0], Num(worst[1], unit), len(values),
                tied)


def extremes(label: str, p: Pick, worst_label: str, sign: str = "") -> Sentence:
    """"label: best (value); worst_label: worst (value)." and its one-format and tie forms."""
    if p.count == 1:
        return (f"{label}: {p.best}, the only format measured ({sign}", p.best_value, ").")
    if p.best_value.text() == p.worst_value.text():
        return (f"{label}: {sign}", p.best_value, f" with each of the {p.count} formats.")
    if len(p.tied) > 1:
        return (f"{label}: a tie of {len(p.tied)} formats at {sign}", p.best_value,
                f" ({', '.join(p.tied)}); {worst_label}: {p.worst} ({sign}", p.worst_value,
                ").")
    return (f"{label}: {p.best} ({sign}", p.best_value, f"); {worst_label}: {p.worst} ({sign}",
            p.worst_value, ").")


def _faster(ratio: float) -> tuple:
    return (Num(ratio, "x"), " faster") if ratio >= 1 else (Num(1 / ratio, "x"), " slower")


def _traits(cell: dict) -> dict:
    if "format_traits" in cell:
        return cell["format_traits"]
    return FORMATS[cell["format"]].traits() if cell["format"] in FORMATS else {}


def _failure(cell: dict) -> tuple:
    return (cell["status"], " (", cell["reason"], ")")


# ------------------------------------------------------------------- the four answers

def onnx_fidelity(cell: dict) -> tuple:
    """How close ONNX's outputs are: labels and probabilities, or regression values."""
    if cell.get("label_agreement") is not None:
        ties = ((" (", Num(cell["label_agreement_untied"], "%"), " of the rows without a "
                 f"vote tie; {cell['tied_rows']} rows are exact ties, which ONNX may break "
                 "toward another class)")
                if cell.get("tied_rows") and cell.get("label_agreement_untied") is not None
                else ())
        return (" and predicts the same label for ", Num(cell["label_agreement"], "%"),
                " of the evaluation rows", *ties,
                *((", probabilities within ", Num(cell["proba_max_abs_diff"]))
                  if cell.get("proba_max_abs_diff") is not None else ()))
    if cell.get("prediction_max_abs_diff") is not None:
        return (" and predicts values within ", Num(cell["prediction_max_abs_diff"]),
                " of scikit-learn's (relative ", Num(cell.get("prediction_max_rel_diff")), ")")
    return ()


def serve_answer(rt: dict[str, dict], inference: list[dict], footprint: list[dict]
                 ) -> list[Sentence]:
    out: list[Sentence] = []
    onnx = rt.get("onnx")
    python = {f: c for f, c in rt.items() if f != "onnx"}
    if onnx is None and not (inference or footprint):
        out.append(("ONNX was not measured for this model.",))
    elif onnx is None:
        pass  # its inference and footprint figures below say what was measured
    elif onnx["status"] != "ok":
        out.append(("ONNX is not available for this model: ", *_failure(onnx), "."))
    else:
        fastest = pick(python, "load_s", "s")
        size = onnx.get("file_bytes")
        out.append((
            "ONNX works: ", *(("a ", Num(size, "B"), " file that loads") if size else
                              ("it loads",)),
            " into an inference session in ", Num(median(onnx.get("load_s")), "s"),
            *((" (the fastest Python format, ", fastest.best, ", loads in ",
               fastest.best_value, ")") if fastest else ()),
            *onnx_fidelity(onnx), "."))
    onnx_failed = onnx is not None and onnx["status"] != "ok"  # said once above
    if onnx is not None and not onnx_failed and not inference:
        out.append(("ONNX Runtime's prediction speed against scikit-learn was not measured "
                    "(run with --experiments inference).",))
    for cell in inference:
        if cell["status"] != "ok" and onnx_failed:
            continue
        if cell["status"] != "ok":
            out.append(("The ONNX Runtime inference benchmark failed: ", *_failure(cell), "."))
            continue
        for method, pts in speedups(cell).items():
            (b1, skl1, ort1, s1), (bn, skln, ortn, sn) = pts[0], pts[-1]
            out.append((
                "ONNX Runtime ", method, " on a batch of ", Num(b1), " takes ", Num(ort1, "s"),
                " against ", Num(skl1, "s"), " with scikit-learn (", *_faster(s1), ")",
                *(("; on a batch of ", Num(bn), ": ", Num(ortn, "s"), " against ",
                   Num(skln, "s"), " (", *_faster(sn), ")") if bn != b1 else ()), "."))
    for cell in footprint:
        if cell["status"] != "ok" and onnx_failed:
            continue
        if cell["status"] != "ok":
            out.append(("The serving footprint benchmark failed: ", *_failure(cell), "."))
            continue
        onnx_s, skl_s = cell.get("onnx_server") or {}, cell.get("sklearn_server") or {}
        rss_o, rss_s = onnx_s.get("rss_after_predict_bytes"), skl_s.get("rss_after_predict_bytes")
        if not (rss_o and rss_s):
            continue

        def ready(server: dict) -> float:
            return sum(median(server.get(k)) or 0.0
                       for k in ("import_s", "load_s", "first_predict_s"))

        leaner = (Num(rss_s / rss_o, "x"), " less memory") if rss_s >= rss_o else \
            (Num(rss_o / rss_s, "x"), " more memory")
        out.append((
            "A fresh ONNX Runtime server holds ", Num(rss_o, "B"), " after its first "
            "prediction against ", Num(rss_s, "B"), " for a scikit-learn one (", *leaner,
            "), and is ready after ", Num(ready(onnx_s), "s"), " against ",
            Num(ready(skl_s), "s"), " (import, load and first prediction)."))
    return out


def security_sentences(security: list[dict]) -> list[Sentence]:
    """What the crafted files of the security experiment did (they stand for any model)."""
    tried = [c for c in security if c["status"] == "ok" and not c.get("variant")
             and "code_executed" in c]
    if not tried:
        return []
    ran = [c["format"] for c in tried if c["code_executed"]]
    held = [c["format"] for c in tried if not c["code_executed"]]
    out: list[Sentence] = [(
        "A crafted file ran its code on load with ", ", ".join(ran) or "no format", "; ",
        f"it did not with {', '.join(held)}" if held else "no format resisted it", ".")]
    careless = [c["format"] for c in tried if c.get("code_executed_if_listed_types_trusted")]
    if careless:
        out.append((", ".join(careless), " ran it too once every type get_untrusted_types "
                    "lists was trusted without review.",))
    return out


def robustness_sentences(robustness: list[dict]) -> list[Sentence]:
    """Damaged files a loader accepted without complaint: wrong predictions, no error."""
    silent = [(c["format"], c["outcomes"]["silent_wrong"], c["trials"]) for c in robustness
              if c["status"] == "ok" and (c.get("outcomes") or {}).get("silent_wrong")]
    if not silent:
        tried = [c for c in robustness if c["status"] == "ok"]
        return [("No damaged file loaded silently wrong (", str(len(tried)), " formats "
                 "tried).",)] if tried else []
    return [("Damaged files that loaded without an error but predict differently: ",
             "; ".join(f"{fmt} {n} of {trials}" for fmt, n, trials in silent),
             " (truncated and bit-flipped copies; check a checksum before loading).",)]


def trust_answer(rt: dict[str, dict], security: list[dict]) -> list[Sentence]:
    worked = {f: c for f, c in rt.items() if c["status"] == "ok"}
    runs_code = [f for f, c in worked.items() if _traits(c).get("executes_code_on_load")]
    safe = [f for f in worked if f not in runs_code]
    out: list[Sentence] = []
    if worked:
        out.append((
            "Of the formats that persisted this model, loading can run code from the file "
            "with ", ", ".join(runs_code) or "none", "; ",
            ("not with " + ", ".join(safe)) if safe else "every one of them does", "."))
    skops = rt.get("skops")
    if skops is None:
        out.append(("skops.io was not measured for this model.",))
    elif skops["status"] != "ok":
        out.append(("skops.io could not round-trip it: ", *_failure(skops), "."))
    else:
        trusted = skops.get("skops_untrusted_types") or []
        # Against formats that read the whole file: a memory-mapped load defers its reading
        # to the first prediction, so its load time is no yardstick for skops' eager load.
        fastest = pick({f: c for f, c in worked.items()
                        if f in PICKLE_BASED and not _traits(c).get("memory_maps")},
                       "load_s", "s")
        load = median(skops.get("load_s"))
        out.append((
            "skops.io loads it in ", Num(load, "s"),
            *((" (", Num(load / fastest.best_value.value, "x"), " the time of ", fastest.best,
               ")") if fastest and fastest.best_value.value else ()),
            (", with no extra type to trust" if not trusted else
             f", after trusting {len(trusted)} type(s) that get_untrusted_types lists: "
             + ", ".join(trusted)), "."))
    return out + security_sentences(security)


def performance_answer(rt: dict[str, dict], sharing: list[dict]) -> list[Sentence]:
    out: list[Sentence] = []
    load, cold = pick(rt, LOAD_THEN_PREDICT, "s"), pick(rt, "load_cold_s", "s")
    size = pick(rt, "file_bytes", "B")
    if load:
        out.append(extremes("Fastest load and first prediction (warm page cache)", load,
                            "slowest"))
    else:
        load = pick(rt, "load_s", "s")
        if load:
            out.append(extremes("Fastest load (warm page cache; first prediction not "
                                "measured)", load, "slowest"))
    out += _deferred_work(rt)
    if cold:
        first = median(rt[cold.best].get("load_cold_first_predict_s"))
        out.append(("Fastest load from a cold page cache: ", cold.best, " in ",
                    cold.best_value, *((", then ", Num(first, "s"), " for the first "
                                        "prediction") if first is not None else ()), "."))
    if size:
        out.append(extremes("Smallest file", size, "largest"))
    for key, phase in (("dump_peak_rss_bytes", "dumping"), ("load_peak_rss_bytes", "loading")):
        p = pick(rt, key, "B")
        if p:
            out.append(extremes(f"Lowest peak memory while {phase}", p, "highest", "+"))
    p4, p5 = rt.get("pickle"), rt.get("pickle-p5")
    if p4 and p5 and p4["status"] == p5["status"] == "ok":
        rss4, rss5 = p4.get("dump_peak_rss_bytes"), p5.get("dump_peak_rss_bytes")
        protocol = (f" (protocol {p4['pickle_protocol']})" if p4.get("pickle_protocol")
                    else "")
        if rss4 is not None and rss5 is not None and rss4 != rss5:  # equal says nothing
            out.append((f"Default-protocol pickle{protocol} needs +", Num(rss4, "B"),
                        " during dump, protocol 5 needs +", Num(rss5, "B"), "."))
    out += _sharing_sentences(sharing)
    return out


DEFERS_MIN_BYTES = 2**20


def _deferred_work(rt: dict[str, dict]) -> list[Sentence]:
    """Formats whose first prediction, not their load, brings the model into memory."""
    out: list[Sentence] = []
    for fmt, c in rt.items():
        paged = c.get("first_predict_rss_bytes")
        if c["status"] != "ok" or paged is None or paged < DEFERS_MIN_BYTES \
                or paged <= (c.get("load_peak_rss_bytes") or 0):
            continue
        load_rss = Num(c.get("load_peak_rss_bytes"), "B")
        first = Num(median(c.get("first_predict_s")), "s")
        out.append((f"{fmt} defers work to the first prediction: its load takes ",
                    Num(median(c.get("load_s")), "s"), " and +", load_rss, ", then the first "
                    "prediction takes ", first, " and leaves +", Num(paged, "B"), " resident."))
    return out


def _sharing_sentences(sharing: list[dict]) -> list[Sentence]:
    ok = [c for c in sharing if c["status"] == "ok" and c.get("total_pss_bytes") is not None]
    if not ok:
        return [("Sharing between processes was not measured for this model "
                 "(run with --experiments sharing).",)]
    n = max(c.get("processes", 0) for c in ok)
    at_n = {c["format"]: c for c in ok if c.get("processes") == n}
    mmap, base = at_n.get("joblib-mmap"), at_n.get("joblib") or at_n.get("pickle-p5")
    if not (mmap and base):
        return [(f"With {n} processes: ",
                 "; ".join(f"{f} totals {Num(c['total_pss_bytes'], 'B')} PSS"
                           for f, c in at_n.items()), ".")]
    saved = base["total_pss_bytes"] - mmap["total_pss_bytes"]
    own = (("; the model's own share (beyond idle servers) is ",
            Num(mmap["model_pss_bytes"], "B"), " against ", Num(base["model_pss_bytes"], "B"))
           if mmap.get("model_pss_bytes") is not None
           and base.get("model_pss_bytes") is not None else ())
    return [(f"With {n} serving processes, joblib-mmap totals ",
             Num(mmap["total_pss_bytes"], "B"), " of PSS against ",
             Num(base["total_pss_bytes"], "B"), f" for {base['format']}: memory mapping ",
             "saves " if saved >= 0 else "costs ", Num(abs(saved), "B"), " (",
             Num(abs(saved) / base["total_pss_bytes"], "%"), ")", *own, ".")]


def custom_code_answer(rt: dict[str, dict]) -> list[Sentence]:
    failed = [c for f, c in rt.items() if f in PICKLE_BASED and c["status"] != "ok"]
    cloud = rt.get("cloudpickle")
    if cloud is None:
        cloud_says: tuple = ("cloudpickle was not measured.",)
    elif cloud["status"] == "ok":
        cloud_says = ("cloudpickle persists it: dump ", Num(median(cloud.get("dump_s")), "s"),
                      ", load ", Num(median(cloud.get("load_s")), "s"), ".")
    else:
        cloud_says = ("cloudpickle failed as well: ", *_failure(cloud), ".")
    if not failed:
        tried = [f for f in rt if f in PICKLE_BASED]
        if not tried:
            return [("No pickle-based format was measured for this model.",)]
        return [("pickle and joblib persisted it (", ", ".join(tried), "), so cloudpickle "
                 "is not needed; ", *cloud_says)]
    first = failed[0]
    return [(f"{len(failed)} pickle-based format(s) failed (", ", ".join(c["format"]
                                                                          for c in failed),
             "); ", first["format"], " says: ", first["reason"], ". ", *cloud_says)]


# ---------------------------------------------------------------------------- guide

def guide(results: MachineResults) -> list[ModelGuide]:
    by_exp: dict[str, dict[tuple[str, str], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for cell in results.cells:
        by_exp[cell["experiment"]][(cell["model"], cell["size"])].append(cell)
    security = [c for cells in by_exp["security"].values() for c in cells]
    out = []
    for model, size in results.models():
        key = (model, size)
        if not any(key in by_exp[e] for e in MODEL_EXPERIMENTS):
            continue  # e.g. the security experiment's crafted payload: not a model to pick for
        rt = {c["format"]: c for c in by_exp["roundtrip"].get(key, [])}
        mg = ModelGuide(model, size, failed=sum(c["status"] != "ok" for c in results.cells
                                                if (c["model"], c["size"]) == key))
        mg.answers = [
            (QUESTIONS[0], serve_answer(rt, by_exp["inference"].get(key, []),
                                        by_exp["footprint"].get(key, []))),
            (QUESTIONS[1], trust_answer(rt, security)
             + robustness_sentences(by_exp["robustness"].get(key, []))),
            (QUESTIONS[2], performance_answer(rt, by_exp["sharing"].get(key, []))),
            (QUESTIONS[3], custom_code_answer(rt)),
        ]
        for measure, label, unit in PICK_MEASURES:
            found = pick(rt, measure, unit)
            if found:
                mg.picks[label] = found
        if "onnx" in rt:
            mg.onnx = "ok" if rt["onnx"]["status"] == "ok" else rt["onnx"]["status"]
        out.append(mg)
    return out
