"""A real browser opens the report: headless Chromium (Debian's `chromium`, which .ci/run
installs) must log no console message and render a screenshot that is not blank.

The page's only script sorts and filters tables and logs nothing, so any console line means
something failed (a script error, a resource that could not load, a parse problem). Every
host name resolves to nothing, so a fetch from the network would fail loudly instead of
silently succeeding. Control pages prove that the console scan and the blank check can fail.
Without Chromium the tests skip (fixture `chromium` in conftest.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from persistbench.report.html import write_reports


def headless(chromium: str, page: Path, workdir: Path, height: int = 2400,
             width: int = 1280) -> tuple[list[str], Path]:
    """Open `page`, return its console messages and a screenshot."""
    shot = workdir / f"{page.parent.name}-{page.stem}-{width}.png"
    shot.unlink(missing_ok=True)  # a screenshot left by an earlier call proves nothing
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={workdir / 'profile'}",
         "--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={shot}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180)
    assert shot.is_file(), done.stderr[-2000:]
    return re.findall(r":CONSOLE[^\]]*\] (.*)", done.stderr), shot


def is_blank(png: Path) -> bool:
    """One flat colour, or almost: nothing was drawn."""
    pixels = matplotlib.image.imread(png)[..., :3].mean(axis=2)
    drawn = (abs(pixels - pixels.max()) > 0.1).mean()
    return bool(pixels.std() < 0.02 or drawn < 0.01)


@pytest.mark.slow
def test_the_checks_can_fail(chromium, tmp_path):
    noisy = tmp_path / "noisy.html"
    noisy.write_text("<!DOCTYPE html><html><body><p>control</p>"
                     "<script>console.error('control error'); missing();</script></body></html>")
    messages, _ = headless(chromium, noisy, tmp_path, height=300)
    assert any("control error" in m for m in messages)
    assert any("ReferenceError" in m for m in messages)
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    assert is_blank(headless(chromium, empty, tmp_path, height=300)[1])


@pytest.mark.slow
def test_report_opens_without_console_errors_and_draws(chromium, report_runs, tmp_path):
    page = write_reports(report_runs["results"], tmp_path / "reports")[0]
    for width in (1280, 400):  # a desktop and a phone: the narrow layout runs its own CSS
        messages, shot = headless(chromium, page, tmp_path, width=width)
        assert messages == [], width
        assert not is_blank(shot), width
    index_messages, index_shot = headless(chromium, tmp_path / "reports" / "index.html",
                                          tmp_path, height=600)
    assert index_messages == [] and not is_blank(index_shot)


@pytest.mark.slow
def test_sorting_and_filtering_work_in_the_browser(chromium, tmp_path):
    """Click a numeric header twice and type in the filter box, then read the DOM back."""
    from persistbench.report.blocks import Table  # a tiny page through the real template
    from persistbench.report.html import environment
    from persistbench.report.values import Num

    table = Table("t", ["model", "file"], [["b", Num(2000, "B")], ["a", Num(30, "B")],
                                           ["c", Num(100_000, "B")]])
    page = environment().from_string(
        '{% extends "base.html.j2" %}{% from "macros.html.j2" import table with context %}'
        '{% block body %}<input id="filter">{{ table(t) }}<script>'
        'window.addEventListener("load", function () {'  # after the page's own script
        'const th = document.querySelectorAll("table.data th")[1]; th.click(); th.click();'
        'const box = document.getElementById("filter"); box.value = "c";'
        'box.dispatchEvent(new Event("input")); });</script>{% endblock %}').render(t=table)
    path = tmp_path / "sort.html"
    path.write_text(page, encoding="utf-8")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", path.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    rows = re.findall(r"<tr( hidden(?:=\"\")?)?><td>(\w)</td>", done.stdout)
    assert [name for _, name in rows] == ["c", "b", "a"], done.stdout[-1500:]  # descending
    assert [bool(hidden) for hidden, _ in rows] == [False, True, True]  # filtered to "c"
