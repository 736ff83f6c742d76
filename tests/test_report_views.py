"""The compat, security and robustness sections, and charts whose data is absent, rendered
from real runs made here (the CLI as a user types it)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import html5lib
import pytest

from persistbench.envs import builder as compat
from persistbench.report import charts
from persistbench.results.schema import read


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "persistbench", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def render(results: Path, out: Path):
    """`persistbench report --only` on one results file; the strictly parsed page."""
    done = run("report", "--only", str(results), "--output", str(out), cwd=out.parent)
    page = Path(re.search(r"report: (\S+)", done.stdout).group(1))
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(
        page.read_bytes())


def text(el) -> str:
    return re.sub(r"\s+", " ", "".join(el.itertext())).strip()


def tables(section) -> dict[str, list[list]]:
    """{title: rows of cell elements} for the titled tables of a section, header row first."""
    out, title = {}, None
    for el in section.iter():
        if el.tag == "h3":
            title = text(el)
        elif el.tag == "table" and title:
            out[title] = [list(tr) for tr in el.iter("tr")]
    return out


def hover(td) -> str | None:
    span = td.find("span")
    return span.get("title") if span is not None else None


@pytest.fixture(scope="module")
def security_run(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("security-run")
    run("run", "--experiments", "security,robustness", "--models", "logreg", "--formats",
        "pickle,skops,onnx", "--no-calibrate", "--output", "run.json", cwd=work)
    doc = render(work / "run.json", work / "report")
    return {"cells": read(work / "run.json")["cells"], "doc": doc}


@pytest.fixture(scope="module")
def compat_run(tmp_path_factory) -> dict:
    """Two scikit-learn versions, two models that pickle and one that cannot (custom_code),
    so matrix cells hold several models and outcomes."""
    work = tmp_path_factory.mktemp("compat-run")
    versions = compat.resolve_versions(None)[-2:]
    run("compat", "--sklearn", ",".join(versions), "--models", "logreg,ridge,custom_code",
        "--formats", "pickle,onnx", "--no-calibrate", "--output", "compat.json", cwd=work)
    doc = render(work / "compat.json", work / "report")
    return {"cells": read(work / "compat.json")["cells"], "doc": doc, "versions": versions}


@pytest.mark.slow
def test_compat_matrix_per_format_counts_outcomes(compat_run):
    cells, versions = compat_run["cells"], compat_run["versions"]
    section = compat_run["doc"].find(".//section[@id='exp-compat']")
    found = tables(section)
    expected: dict[str, dict[str, Counter]] = {}
    for c in cells:
        label = c["outcome"] if c["status"] == "ok" else f"[{c['status']}]"
        expected.setdefault(c["format"], {}).setdefault(c["variant"], Counter())[label] += 1
    assert set(expected) == {"pickle", "onnx"}
    mixed = 0
    for fmt, by_pair in expected.items():
        rows = found[f"{fmt}: rows saved with, columns loaded with"]
        assert [text(th) for th in rows[0]][1:] == versions
        assert [text(row[0]) for row in rows[1:]] == versions
        for saved, row in zip(versions, rows[1:], strict=True):
            for loaded, td in zip(versions, row[1:], strict=True):
                counts = by_pair[f"{saved}->{loaded}"]
                shown = dict(part.rsplit(" ", 1) for part in text(td).split(" · "))
                assert {k: int(n) for k, n in shown.items()} == dict(counts)
                mixed += len(counts) > 1
                detail = hover(td)
                for c in cells:
                    if c["format"] == fmt and c["variant"] == f"{saved}->{loaded}":
                        assert f"{c['model']}: " in detail
                        if c.get("outcome") == "warning":
                            assert f"{c['warning_class']}: " in detail
    assert mixed, "custom_code cannot be pickled, so it shares matrix cells with the others"
    assert max(n for by_pair in expected.values() for counts in by_pair.values()
               for n in counts.values()) > 1
    warned = [c for c in cells if c.get("outcome") == "warning" and c["format"] == "pickle"]
    assert {c["warning_class"] for c in warned} == {"InconsistentVersionWarning"}

    totals = {text(row[0]): [text(td) for td in row[1:]]
              for row in found["outcomes per format (all models and version pairs)"][1:]}
    header = [text(th) for th in found["outcomes per format (all models and version pairs)"][0]]
    for fmt, by_pair in expected.items():
        total = sum(by_pair.values(), Counter())
        shown = dict(zip(header[1:], totals[fmt], strict=True))
        assert shown.pop("cells") == str(sum(total.values()))
        assert {k: int(v) for k, v in shown.items() if v != "0"} == dict(total)


def test_security_table_has_one_row_per_crafted_file(security_run):
    cells = [c for c in security_run["cells"] if c["experiment"] == "security"]
    section = security_run["doc"].find(".//section[@id='exp-security']")
    rows = tables(section)["crafted files, one per format"]
    header = [text(th) for th in rows[0]]
    assert len(rows) - 1 == len(cells) == 4  # pickle, skops, onnx, onnx external data
    for c, row in zip(cells, rows[1:], strict=True):
        assert c["status"] == "ok", c.get("reason")
        shown = dict(zip(header, row, strict=True))
        assert text(shown["format"]) == c["format"]
        assert text(shown["variant"]) == c.get("variant", "")
        ran = text(shown["code executed on load"])
        assert ran.startswith("yes") == c["code_executed"]
        assert text(shown["loader outcome"]) == c["loader_outcome"]
        assert text(shown["loader message"]) == c["loader_message"]
        audit = text(shown["static audit (persistbench audit)"])
        assert audit == {0: "clean", 1: f"flagged ({len(c['static_audit_findings'])})",
                         2: "unreadable"}[c["static_audit_exit_status"]]
        events = text(shown["audit events while loading"])
        counted = sum(int(n) for n in re.findall(r"×(\d+)", events))
        assert counted == len(c["audit_events"])
    by_format = {(c["format"], c.get("variant", "")): c for c in cells}
    assert by_format[("pickle", "")]["code_executed"]  # the seed page's warning, measured
    assert not by_format[("skops", "")]["code_executed"]
    skops_row = rows[1 + list(by_format).index(("skops", ""))]
    also = text(skops_row[header.index("also checked")])
    ran_trusting = by_format[("skops", "")]["code_executed_if_listed_types_trusted"]
    assert also.endswith(f"code ran: {'yes' if ran_trusting else 'no'}")


def test_robustness_counts_per_format_match_the_cells(security_run):
    cells = [c for c in security_run["cells"] if c["experiment"] == "robustness"]
    section = security_run["doc"].find(".//section[@id='exp-robustness']")
    found = tables(section)
    rows = found["outcomes per format (summed over models)"]
    header = [text(th) for th in rows[0]]
    shown = {text(row[0]): dict(zip(header[1:], (text(td) for td in row[1:]), strict=True))
             for row in rows[1:]}
    assert set(shown) == {"pickle", "skops", "onnx"}
    names = {"clean_exception": "clean exception", "silent_wrong": "silent wrong load",
             "loaded_identical": "loaded identical", "crash": "crash", "hang": "hang"}
    for fmt, row in shown.items():
        mine = [c for c in cells if c["format"] == fmt and c["status"] == "ok"]
        assert mine
        assert int(row["trials"]) == sum(c["trials"] for c in mine) > 0
        for key, label in names.items():
            assert int(row[label]) == sum(c["outcomes"][key] for c in mine)
        assert sum(int(row[label]) for label in names.values()) == int(row["trials"])
    assert len(found["per model"]) - 1 == len(cells)


@pytest.mark.slow
def test_timings_only_results_render_without_the_missing_charts(tmp_path):
    """asv results carry timings but no file sizes or memory: such charts are left out."""
    run("run", "--models", "logreg", "--formats", "pickle,joblib", "--repeat", "1",
        "--no-calibrate", "--output", "full.json", cwd=tmp_path)
    data = json.loads((tmp_path / "full.json").read_text())
    for cell in data["cells"]:
        for key in [k for k in cell if "bytes" in k or "rss" in k]:
            del cell[key]
        assert cell["dump_s"] and cell["load_s"]
    (tmp_path / "timings.json").write_text(json.dumps(data))
    section = render(tmp_path / "timings.json", tmp_path / "report").find(
        ".//section[@id='exp-roundtrip']")
    figures = [text(f.find("h3")) for f in section.iter("figure")]
    assert figures == ["dump and load time per format (median, log scale)"]
    assert section.find(".//figure//{http://www.w3.org/2000/svg}svg") is not None
    skipped = [text(p) for p in section.iter("p") if text(p).startswith("Not plotted")]
    assert len(skipped) == 3  # file size, peak RSS, size against load time


def test_charts_return_nothing_to_draw_as_none():
    assert charts.dot_panels(["logreg"], [("size", {"pickle": [None]})], "B") is None
    assert charts.dot_panels(["logreg"], [("size", {"pickle": [0]})], "B") is None  # log axis
    assert charts.pareto_grid({}, "B", "s", "size", "load") is None
    assert charts.line_grid({}, "batch", "speedup", "x") is None


def test_asv_directory_with_timings_only_renders(tmp_path):
    """The reported case: an asv results directory whose file-size track was skipped."""
    from test_importers import _asv_results

    nan = math.nan
    _asv_results(tmp_path / "asv", "a" * 40, 1_700_000_000_000, [0.02, nan], [0.005, nan],
                 [nan, nan])
    (tmp_path / "out").mkdir()
    doc = render(tmp_path / "asv", tmp_path / "out" / "report")
    section = doc.find(".//section[@id='exp-roundtrip']")
    assert [text(f.find("h3")) for f in section.iter("figure")] == [
        "dump and load time per format (median, log scale)"]
    page = text(doc.find(".//body"))
    for unknown in ("None", "protocol ?", "a - file", "--no-calibrate)"):
        assert unknown not in page, unknown  # what asv does not record is left out
