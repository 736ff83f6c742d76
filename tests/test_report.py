"""The HTML report and the Markdown summary, rendered from real runs (fixture `report_runs`)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import html5lib
import pytest

from persistbench.report.blocks import VIEWS
from persistbench.report.data import load
from persistbench.report.guide import guide
from persistbench.report.html import render_report, write_reports
from persistbench.report.values import plain
from persistbench.results.schema import read
from persistbench.results.units import human_bytes, human_seconds

SVG = "{http://www.w3.org/2000/svg}svg"


def parse(path: Path):
    """Strict HTML5 parse: any parse error fails the test."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(
        path.read_bytes())


def text_of(doc) -> str:
    return re.sub(r"\s+", " ", "".join(doc.itertext()))


def external_resources(path: Path) -> list[str]:
    """Everything in the page that would make a browser fetch something from elsewhere."""
    doc = parse(path)
    found = []
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        for attr, value in el.attrib.items():
            name = attr.split("}")[-1]
            if name not in ("src", "href", "data", "srcset", "poster", "action"):
                continue
            remote = re.match(r"\s*(https?:)?//", value)
            loaded = el.tag.split("}")[-1] != "a" and not value.startswith("#")
            if remote or loaded:  # a link is followed on a click; anything else is fetched
                found.append(f"<{el.tag} {name}={value}>")
        if el.tag == "link" or (el.tag == "script" and "src" in el.attrib):
            found.append(f"<{el.tag}>")
    raw = path.read_text()
    found += re.findall(r"@import|url\((?!\s*['\"]?#)", raw)  # url(#clip) is in-page
    found += re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//[^"'\s>]+""", raw)
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "persistbench", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def report(report_runs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report")
    done = run("report", *map(str, report_runs["results"]), "--output", str(out))
    assert done.returncode == 0, done.stderr
    page = Path(re.search(r"report: (\S+)", done.stdout).group(1))
    cells = [c for p in report_runs["results"] for c in read(p)["cells"]]
    return {"page": page, "dir": out, "cells": cells, "doc": parse(page)}


def test_run_ends_with_a_report_and_prints_its_path(report_runs):
    work = report_runs["dir"]
    machine = read(report_runs["results"][0])["machine"]["machine_id"]
    for stdout in report_runs["stdout"]:
        printed = re.search(r"^report: (\S+)$", stdout, re.M)
        assert printed, stdout[-500:]
        assert printed.group(1) == f"reports/{machine}/index.html"
        assert (work / printed.group(1)).is_file()
    index = parse(work / "reports" / "index.html")
    links = [a.get("href") for a in index.iter("a")]
    assert f"{machine}/index.html" in links


def test_report_has_every_model_format_failure_and_figure(report):
    text = text_of(report["doc"])
    cells = report["cells"]
    for cell in cells:
        assert cell["model"] in text and cell["format"] in text
    failed = [c for c in cells if c["status"] != "ok"]
    assert failed, "the fixture's custom_code model must fail with plain pickle"
    rows = [text_of(tr) for tr in report["doc"].find(".//section[@id='failed']").iter("tr")]
    for cell in failed:
        assert any(cell["cell_id"].split("/")[1] in r and cell["format"] in r
                   and cell["status"] in r and re.sub(r"\s+", " ", cell["reason"]) in r
                   for r in rows), cell["cell_id"]
    sections = {s.get("id") for s in report["doc"].iter("section")}
    assert {f"exp-{c['experiment']}" for c in cells} <= sections
    figures = report["doc"].findall(".//figure")
    assert len(figures) >= 7  # 5 round-trip figures, sharing, ONNX speedup
    assert all(f.find(f".//{SVG}") is not None for f in figures)
    for title in ("dump and load time per format", "file size per format",
                  "peak RSS above the phase's start", "Pareto front",
                  "fraction of calibrated bandwidth", "memory of all serving processes",
                  "speedup against batch size"):
        assert any(title in text_of(f) for f in figures), title


def test_report_loads_no_external_resource(report):
    assert external_resources(report["page"]) == []
    assert external_resources(report["dir"] / "index.html") == []


def test_numbers_are_humanised_with_the_exact_value_on_hover(report):
    cell = next(c for c in report["cells"] if c["experiment"] == "roundtrip"
                and c["status"] == "ok" and c["model"] == "kneighbors")
    spans = [s for s in report["doc"].iter("span") if s.get("class") == "num"]
    exact = f"{cell['file_bytes']!r} bytes"
    assert any(s.get("title") == exact and s.text == human_bytes(cell["file_bytes"])
               for s in spans)
    load_s = cell["load_s"]["median"]  # a measured median: its samples and spread on hover
    assert any(s.get("title", "").startswith(f"median {load_s!r} s of {cell['load_s']['n']} ")
               and s.text.startswith(human_seconds(load_s)) for s in spans)


def test_machine_card(report, report_runs):
    first = read(report_runs["results"][0])
    card = text_of(report["doc"].find(".//section[@id='machine']"))
    m = first["machine"]
    assert m["machine_id"] in card and m["cpu_model"] in card
    for name, version in m["packages"].items():
        if version:
            assert f"{name} {version}" in card or f"{name}{version}" in card
    assert human_bytes(m["calibration"]["page_cache_read_bps"]) + "/s" in card
    assert " ".join(first["run"]["argv"][1:]) in card


def _cells(results: list[Path]) -> dict[tuple, dict]:
    return {(c["experiment"], c["model"], c["format"]): c
            for p in results for c in read(p)["cells"]}


def _fastest_and_slowest(served: dict[str, float]) -> str:
    """The sentence the guide must write, in each of its forms: values that read the same
    once rounded for display are a tie, named in the order the formats were measured."""
    label = "Fastest load and first prediction (warm page cache): "
    fastest, slowest = min(served, key=served.get), max(served, key=served.get)
    best, worst = human_seconds(served[fastest]), human_seconds(served[slowest])
    tied = [f for f in served if human_seconds(served[f]) == best]
    if best == worst:
        return f"{label}{best} with each of the {len(served)} formats."
    if len(tied) > 1:
        return (f"{label}a tie of {len(tied)} formats at {best} ({', '.join(tied)}); "
                f"slowest: {slowest} ({worst}).")
    return f"{label}{fastest} ({best}); slowest: {slowest} ({worst})."


def test_fastest_and_slowest_sentence_names_a_tie():
    """Known values for the three forms the oracle below expects."""
    assert _fastest_and_slowest({"pickle": 807.2e-6, "cloudpickle": 806.9e-6, "skops": 2.74e-3}
                                ) == ("Fastest load and first prediction (warm page cache): a tie "
                                      "of 2 formats at 807 μs (pickle, cloudpickle); slowest: "
                                      "skops (2.74 ms).")
    assert _fastest_and_slowest({"pickle": 1e-3, "skops": 2e-3}).endswith(
        ": pickle (1.00 ms); slowest: skops (2.00 ms).")
    assert _fastest_and_slowest({"pickle": 1e-3, "skops": 1.0001e-3}).endswith(
        ": 1.00 ms with each of the 2 formats.")


def test_decision_guide_sentences_come_from_the_data(report_runs, report):
    machines = load(report_runs["results"])
    assert len(machines) == 1
    guides = {g.model: g for g in guide(machines[0])}
    cells = _cells(report_runs["results"])
    html_text = text_of(report["doc"])
    for model, g in guides.items():
        answers = {q: " ".join(plain(s) for s in sentences) for q, sentences in g.answers}
        serve, trust, perf, custom = answers.values()
        rt = {f: c for (e, m, f), c in cells.items() if e == "roundtrip" and m == model}
        ok = {f: c for f, c in rt.items() if c["status"] == "ok"}
        served = {f: c["load_s"]["median"] + c["first_predict_s"]["median"]
                  for f, c in ok.items()}  # what serving the first row costs after a load
        if len(ok) > 1:
            assert _fastest_and_slowest(served) in perf
        smallest = min(ok, key=lambda f: ok[f]["file_bytes"])
        assert human_bytes(ok[smallest]["file_bytes"]) in perf
        if {"pickle", "pickle-p5"} <= set(ok):
            rss4, rss5 = (ok[f]["dump_peak_rss_bytes"] for f in ("pickle", "pickle-p5"))
            sentence = (f"Default-protocol pickle (protocol {ok['pickle']['pickle_protocol']}) "
                        f"needs +{human_bytes(rss4)} during dump, protocol 5 needs "
                        f"+{human_bytes(rss5)}")
            # an equal peak says nothing about the protocols: the sentence is left out
            assert (sentence in perf) == (rss4 != rss5)
        runs_code = [f for f, c in ok.items() if c["format_traits"]["executes_code_on_load"]]
        assert f"with {', '.join(runs_code)};" in trust
        eager = [f for f in ok if f.startswith(("pickle", "joblib"))
                 and not ok[f]["format_traits"]["memory_maps"]]
        if "skops" in ok and eager:  # against pickle/joblib formats that read the whole file
            yardstick = min(eager, key=lambda f: ok[f]["load_s"]["median"])
            assert (f"skops.io loads it in {human_seconds(ok['skops']['load_s']['median'])} ("
                    ) in trust
            assert f"the time of {yardstick})" in trust
        if rt["onnx"]["status"] == "ok":
            assert f"ONNX works: a {human_bytes(rt['onnx']['file_bytes'])} file" in serve
        else:
            assert f"ONNX is not available for this model: {rt['onnx']['status']}" in serve
            assert rt["onnx"]["reason"] in serve
        broken = [f for f, c in rt.items() if c["status"] != "ok" and f.startswith(
            ("pickle", "joblib"))]
        if broken:
            assert f"{len(broken)} pickle-based format(s) failed ({', '.join(broken)})" in custom
            cloud = rt["cloudpickle"]
            assert f"load {human_seconds(cloud['load_s']['median'])}" in custom
        else:
            assert "cloudpickle is not needed" in custom
        for _, sentences in g.answers:  # the page shows exactly these sentences
            for sentence in sentences:
                assert re.sub(r"\s+", " ", plain(sentence)) in html_text

    # the second run's experiments, merged into the same machine's guide
    logreg = " ".join(plain(s) for _, ss in guides["logreg"].answers for s in ss)
    mmap = cells[("sharing", "logreg", "joblib-mmap")]
    plain_joblib = cells[("sharing", "logreg", "joblib")]
    assert (f"With {mmap['processes']} serving processes, joblib-mmap totals "
            f"{human_bytes(mmap['total_pss_bytes'])} of PSS against "
            f"{human_bytes(plain_joblib['total_pss_bytes'])} for joblib") in logreg
    latency = cells[("inference", "logreg", "onnx")]["latency"]
    one = {p["runtime"]: p["median_s"] for p in latency
           if p["batch_size"] == 1 and p["method"] == "predict"}
    assert (f"ONNX Runtime predict on a batch of 1 takes {human_seconds(one['onnxruntime'])} "
            f"against {human_seconds(one['sklearn'])} with scikit-learn") in logreg
    fp = cells[("footprint", "logreg", "onnx")]
    assert (f"A fresh ONNX Runtime server holds "
            f"{human_bytes(fp['onnx_server']['rss_after_predict_bytes'])} after its first "
            f"prediction against {human_bytes(fp['sklearn_server']['rss_after_predict_bytes'])}"
            ) in logreg


def test_markdown_summary(report_runs):
    done = run("report", *map(str, report_runs["results"]), "--format", "md")
    assert done.returncode == 0, done.stderr
    md = done.stdout
    assert md.startswith("# persistbench · ") and "## Decision guide" in md
    assert md.index("## Verdict") < md.index("## Headline")
    cells = _cells(report_runs["results"])
    for model in ("logreg", "kneighbors", "custom_code"):
        ok = {f: c for (e, m, f), c in cells.items()
              if e == "roundtrip" and m == model and c["status"] == "ok"}
        fastest = min(ok, key=lambda f: ok[f]["load_s"]["median"])
        shown = human_seconds(ok[fastest]["load_s"]["median"])
        alike = len(ok) > 1 and shown == human_seconds(
            max(c["load_s"]["median"] for c in ok.values()))
        row = next(line for line in md.splitlines() if line.startswith(f"| {model} | small |"))
        verdict_row = next(line for line in md.splitlines() if line.startswith(f"| {model} |"))
        assert verdict_row.count(" | ") == 5  # a model and five needs
        # every format reading the same once rounded is one figure for all, not a winner
        assert (f"all {len(ok)}: {shown}" if alike else f"{fastest} {shown}") in row
        assert f"### {model} (small)" in md
    for c in cells.values():
        if c["status"] != "ok":
            assert f"`{c['cell_id']}` {c['status']}" in md


def test_experiment_without_a_view_gets_a_generic_table(report_runs, report, monkeypatch,
                                                        tmp_path):
    """Every experiment has a view now; without security's, its cells fall back to the
    generic table of all cells."""
    security = [c for c in report["cells"] if c["experiment"] == "security"]
    assert security and "security" in VIEWS
    monkeypatch.delitem(VIEWS, "security")
    page = tmp_path / "index.html"
    page.write_text(render_report(load(report_runs["results"])[0]), encoding="utf-8")
    section = parse(page).find(".//section[@id='exp-security']")
    assert text_of(section.find("h2")) == "security (all cells)"
    rows = [text_of(tr) for tr in section.iter("tr")][1:]
    assert len(rows) == len(security)
    for c, row in zip(security, rows, strict=True):
        assert c["format"] in row and c["status"] in row
        if c["status"] == "ok":
            assert ("yes" if c["code_executed"] else "no") in row


def test_guide_cites_the_crafted_files(report_runs):
    security = [c for p in report_runs["results"] for c in read(p)["cells"]
                if c["experiment"] == "security" and c["status"] == "ok" and not c.get("variant")]
    ran = [c["format"] for c in security if c["code_executed"]]
    held = [c["format"] for c in security if not c["code_executed"]]
    assert "joblib" in ran and "onnx" in held
    for g in guide(load(report_runs["results"])[0]):
        trust = " ".join(plain(s) for s in g.answers[1][1])
        assert (f"A crafted file ran its code on load with {', '.join(ran)}; "
                f"it did not with {', '.join(held)}.") in trust
    assert "payload" not in {g.model for g in guide(load(report_runs["results"])[0])}


def test_index_lists_every_machine(report_runs, tmp_path):
    data = json.loads(report_runs["results"][0].read_text())
    other = copy.deepcopy(data)
    other["machine"]["machine_id"] = "other-aarch64-00000000"
    other["machine"]["arch"] = "aarch64"
    (tmp_path / "other.json").write_text(json.dumps(other))
    pages = write_reports([report_runs["results"][0], tmp_path / "other.json"], tmp_path / "r")
    assert [p.parent.name for p in pages] == [data["machine"]["machine_id"],
                                              "other-aarch64-00000000"]
    index = parse(tmp_path / "r" / "index.html")
    # Two machines: the cross-machine page is written and linked too.
    assert sorted(a.get("href") for a in index.iter("a")) == sorted(
        [f"{p.parent.name}/index.html" for p in pages] + ["machines.html"])
    assert "aarch64" in text_of(index)


@pytest.mark.slow
def test_report_usage_errors(tmp_path):
    missing = run("report", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "nope.json" in missing.stderr and missing.stderr.count("\n") == 1
    (tmp_path / "bad.json").write_text("{}")
    assert run("report", str(tmp_path / "bad.json")).returncode == 2
    assert run("report", str(tmp_path / "bad.json"), "--format", "pdf").returncode == 2
    assert run("report", str(tmp_path / "bad.json"), "--format", "md", "--output",
               str(tmp_path)).returncode == 2


def test_the_page_opens_with_the_verdict_for_every_model(report):
    body = report["doc"].find(".//body")
    first_section = next(el for el in body.iter() if el.tag == "section")
    assert first_section.get("id") == "verdict"
    assert [el.tag for el in body][:2] == ["header", "section"]  # nothing in between
    table = first_section.find(".//table")
    header = [text_of(th) for th in table.find("thead").iter("th")]
    assert header[1:] == ["fastest to serve", "least memory across N processes",
                          "smallest file", "safe to load from an untrusted source",
                          "no Python at serving time"]
    rows = {text_of(tr.find("th")): [text_of(td) for td in tr.findall("td")]
            for tr in table.find("tbody").iter("tr")}
    models = {c["model"] for c in report["cells"] if c["experiment"] == "roundtrip"}
    assert set(rows) == models
    assert all(len(answers) == 5 and all(answers) for answers in rows.values())
    # logreg's sharing run (run 2) reaches the verdict beside its round trips (run 1)
    assert "PSS for 2 processes" in rows["logreg"][1]
    assert "not measured" in rows["kneighbors"][1]  # and names the command for it
    assert "persistbench run --models kneighbors --sizes small --experiments sharing" in \
        rows["kneighbors"][1]


def test_a_later_run_adds_to_the_machines_report_unless_only(report_runs, tmp_path):
    """Run 2 (sharing, security, ...) wrote its report after run 1 (round trips) in one
    folder: the page keeps run 1's round trips; `report --only` shows one file alone."""
    work = report_runs["dir"]
    machine = read(report_runs["results"][0])["machine"]["machine_id"]
    after_run2 = parse(work / "reports" / machine / "index.html")
    ids = {s.get("id") for s in after_run2.iter("section")}
    assert {"exp-roundtrip", "exp-sharing", "exp-security"} <= ids
    runs = text_of(after_run2.find(".//section[@id='machine']"))
    assert "run1.json" in runs and "run2.json" in runs
    done = run("report", "--only", str(report_runs["results"][1]), "--output",
               str(tmp_path / "only"))
    assert done.returncode == 0, done.stderr
    only = parse(Path(re.search(r"report: (\S+)", done.stdout).group(1)))
    only_ids = {s.get("id") for s in only.iter("section")}
    assert "exp-sharing" in only_ids and "exp-roundtrip" not in only_ids


def test_every_chart_mark_has_a_hover_title(report):
    figures = report["doc"].findall(".//figure")
    for figure in figures:
        titles = [t.text for t in figure.iter("{http://www.w3.org/2000/svg}title")]
        assert titles, text_of(figure.find("h3"))
    dots = next(f for f in figures if "file size per format" in text_of(f))
    titles = [t.text for t in dots.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("kneighbors") is False and ", kneighbors: " in t for t in titles)
