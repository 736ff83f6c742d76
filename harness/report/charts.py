"""Figures as inline SVG (matplotlib, Agg): no image files, no fonts to fetch, no network.

Every chart takes plain numbers already picked out of the cells (SI units) and returns
HTML: one `<svg>` per panel in a wrapping `<div class="panels">`, so panels sit side by side
on a wide screen and stack on a phone; or None when there is nothing to draw (e.g. asv
results hold timings but no sizes or memory). Every mark carries a `<title>` (format, row
and value), which browsers show on hover. Views decide what to plot, this module only how.
"""

from __future__ import annotations

import html
import io
import itertools
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from persistbench.report.values import Num
from persistbench.sources.formats import FORMATS

plt.rcParams.update({
    "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
})
MARKERS = "osD^v<>ph*X"
# One mark per point, each a Line2D of one point, not a scatter: each needs its own hover
# title (its own SVG group), and a one-point scatter costs about 6 ms to build and draw,
# most of a report's time with a quick run's 800 marks.
MARK_SIZE = 5


def colour(label: str, labels: Sequence[str]) -> str:
    """One colour per format for the whole report, in registry order."""
    known = [*FORMATS, *[x for x in labels if x not in FORMATS]]
    return plt.get_cmap("tab10" if len(known) <= 10 else "tab20")(known.index(label) % 20)


def marker(label: str, labels: Sequence[str]) -> str:
    known = [*FORMATS, *[x for x in labels if x not in FORMATS]]
    return MARKERS[known.index(label) % len(MARKERS)]


class Marks:
    """Hover titles for one figure's marks: each mark is drawn with a unique gid, which the
    SVG writer keeps as the id of the mark's group, where `to_svg` puts its <title>."""

    _ids = itertools.count()

    def __init__(self) -> None:
        self.titles: dict[str, str] = {}

    def gid(self, title: str) -> str:
        gid = f"pb-mark-{next(self._ids)}"
        self.titles[gid] = title
        return gid


def to_svg(fig, marks: Marks | None = None) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: invalid inside HTML
    for gid, title in (marks.titles if marks else {}).items():
        text = text.replace(f'<g id="{gid}">',
                            f'<g id="{gid}"><title>{html.escape(title)}</title>', 1)
    return text


def panels_html(svgs: Sequence[str]) -> str | None:
    return f'<div class="panels">{"".join(svgs)}</div>' if svgs else None


def tick_text(value: float, unit: str) -> str:
    """A tick label: 1k and 10k for counts, 850× for ratios, the report's units otherwise."""
    if value == 0:
        return "0"
    if unit == "":
        for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                return f"{value / size:g}{suffix}"
        return f"{value:g}"
    if unit == "x":
        return f"{value:.0f}×" if abs(value) >= 100 else f"{value:.2g}×"
    return Num(value, unit).text()


def _unit_axis(ax, unit: str, axis: str = "x") -> None:
    """Tick labels in the report's units; minor ticks unlabelled (log axes crowd them)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    low, high = ax.get_xlim() if axis == "x" else ax.get_ylim()
    if target.get_scale() == "log" and 0 < low < high < low * 30:
        # under about a decade and a half, decades alone leave the axis without a label
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: tick_text(v, unit)))
    target.set_minor_formatter(NullFormatter())


def _legend_svg(labels: Sequence[str], extra: Sequence[tuple[str, dict]] = ()) -> str:
    """The formats' legend as a panel of its own, so it wraps with the panels."""
    fig = plt.figure(figsize=(2.0, 0.22 * (len(labels) + len(extra)) + 0.2))
    handles = [Line2D([], [], ls="", marker=marker(f, labels), color=colour(f, labels),
                      label=f) for f in labels]
    handles += [Line2D([], [], label=name, **style) for name, style in extra]
    fig.legend(handles=handles, loc="center", frameon=False)
    return to_svg(fig)


def dot_panels(rows: Sequence[str], panels: Sequence[tuple[str, dict[str, list]]], unit: str,
               scale: str = "log", linthresh: float = 1.0) -> str | None:
    """One row per model, one marker per format; each panel its own chart.

    `panels` is [(title, {format: [value per row or None]})]. Values <= 0 are left out of a
    log axis (a symlog axis keeps them); a panel with nothing to draw is left out.
    """
    def drawable(v) -> bool:
        return v is not None and (v > 0 or scale != "log")

    panels = [(t, series) for t, series in panels
              if any(drawable(v) for values in series.values() for v in values)]
    if not panels:
        return None
    labels = list(dict.fromkeys(f for _, series in panels for f in series))
    offsets = {f: (i - (len(labels) - 1) / 2) * 0.6 / max(len(labels), 1)
               for i, f in enumerate(labels)}
    svgs = []
    for title, series in panels:
        marks = Marks()
        fig, ax = plt.subplots(figsize=(4.2, 0.9 + 0.32 * len(rows)))
        for fmt, values in series.items():
            for i, v in enumerate(values):
                if drawable(v):
                    ax.plot([v], [i + offsets[fmt]], ls="", ms=MARK_SIZE,
                            color=colour(fmt, labels), marker=marker(fmt, labels), zorder=3,
                            gid=marks.gid(f"{fmt}, {rows[i]}: {Num(v, unit).text()}"))
        ax.set_xscale(scale, **({"linthresh": linthresh} if scale == "symlog" else {}))
        if scale == "linear":  # a linear axis starts at zero: no exaggerated gaps
            ax.set_xlim(left=0)
            ax.xaxis.set_major_locator(MaxNLocator(4))
        elif scale == "symlog":  # zero, then decades past the linear zone ("0" and "10 kB"
            ax.set_xlim(left=0)  # would print over each other inside it)
            top = ax.get_xlim()[1]
            decades = [10.0 ** k for k in range(0, 16) if linthresh <= 10.0 ** k <= top]
            ax.set_xticks([0.0, *decades])
        _unit_axis(ax, unit)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_title(title)
        ax.set_yticks(range(len(rows)), list(rows))
        ax.set_ylim(len(rows) - 0.5, -0.5)
        svgs.append(to_svg(fig, marks))
    return panels_html([*svgs, _legend_svg(labels)])


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Points no other point beats on both axes (smaller and faster), sorted by x."""
    front = []
    for p in sorted(points, key=lambda q: (q[1], q[2])):
        if not front or p[2] < front[-1][2]:
            front.append(p)
    return front


def _small_multiples(groups: dict, figsize: tuple[float, float]):
    """Per group with data: its title, data, a figure and axes, and the marks' hover titles."""
    for title, data in groups.items():
        if data:
            fig, ax = plt.subplots(figsize=figsize)
            yield title, data, fig, ax, Marks()


def pareto_grid(groups: dict[str, list[tuple[str, float, float]]], xunit: str,
                yunit: str, xlabel: str, ylabel: str) -> str | None:
    """Small multiples: per model, (format, x, y) points with the Pareto front drawn.

    Only the front's formats are labelled on the chart, alternately above and below their
    point so neighbours do not print over each other; every point has a hover title.
    """
    if not any(groups.values()):
        return None
    labels = list(dict.fromkeys(p[0] for pts in groups.values() for p in pts))
    svgs = []
    for title, pts, fig, ax, marks in _small_multiples(groups, (3.4, 2.9)):
        for fmt, x, y in pts:
            ax.plot([x], [y], ls="", ms=MARK_SIZE, color=colour(fmt, labels),
                    marker=marker(fmt, labels), zorder=3,
                    gid=marks.gid(f"{fmt}: {Num(x, xunit).text()}, {Num(y, yunit).text()}"))
        front = pareto_front(pts)
        ax.plot([p[1] for p in front], [p[2] for p in front], color="black", lw=1, ls="--",
                zorder=2)
        for i, (fmt, x, y) in enumerate(front):
            ax.annotate(fmt, (x, y), textcoords="offset points", fontsize=7,
                        xytext=(5, 4) if i % 2 == 0 else (5, -10))
        ax.set_xscale("log")
        ax.set_yscale("log")
        _unit_axis(ax, xunit, "x")
        _unit_axis(ax, yunit, "y")
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        svgs.append(to_svg(fig, marks))
    front_style = {"color": "black", "ls": "--"}
    return panels_html([*svgs, _legend_svg(labels, [("Pareto front", front_style)])])


def line_grid(groups: dict[str, dict[str, list[tuple[float, float]]]], xlabel: str,
              ylabel: str, yunit: str, logx: bool = True, logy: bool = False,
              reference: float | None = None) -> str | None:
    """Small multiples of lines: per panel, {series: [(x, y), ...]}; `reference` a dashed y."""
    if not any(groups.values()):
        return None
    svgs = []
    for title, series, fig, ax, marks in _small_multiples(groups, (3.8, 2.9)):
        for i, (name, pts) in enumerate(series.items()):
            pts = sorted(pts)
            style = {"color": plt.get_cmap("tab10")(i % 10), "marker": MARKERS[i % len(MARKERS)]}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, ms=4, **style)
            for x, y in pts:  # one mark per point, over the line's, to carry its hover title
                ax.plot([x], [y], ls="", ms=4, color=style["color"], marker=style["marker"],
                        zorder=3, gid=marks.gid(f"{name}, {xlabel} {tick_text(x, '')}: "
                                                f"{tick_text(y, yunit)}"))
        if reference is not None:
            ax.axhline(reference, color="grey", lw=1, ls="--")
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        _unit_axis(ax, "", "x")
        _unit_axis(ax, yunit, "y")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        svgs.append(to_svg(fig, marks))
    return panels_html(svgs)


def ratio_bars(panels: Sequence[tuple[str, dict[str, dict[str, tuple]]]], reference: str
               ) -> str | None:
    """Per panel (a measure), one row per format and one bar per machine: its speed relative
    to `reference` (> 1: faster), the bar at the geometric mean over models, the whisker from
    the slowest to the fastest model. `panels` is [(title, {machine: {format: (mean, low,
    high, models)}})]; a panel without any ratio is left out."""
    panels = [(t, by) for t, by in panels if any(by.values())]
    if not panels:
        return None
    machines = list(dict.fromkeys(m for _, by in panels for m in by))
    svgs = []
    for title, by_machine in panels:
        formats = [f for f in FORMATS if any(f in v for v in by_machine.values())]
        formats += [f for v in by_machine.values() for f in v if f not in formats]
        marks = Marks()
        fig, ax = plt.subplots(figsize=(4.4, 0.9 + 0.3 * len(formats) * max(len(machines), 1)
                                        ** 0.5))
        height = 0.8 / len(machines)
        for j, machine in enumerate(machines):
            style = {"color": plt.get_cmap("tab10")(j % 10)}
            for i, fmt in enumerate(formats):
                if fmt not in by_machine.get(machine, {}):
                    continue
                mean, low, high, count = by_machine[machine][fmt]
                y = i + (j - (len(machines) - 1) / 2) * height
                ax.barh([y], [mean - 1], left=1, height=height * 0.9, zorder=2,
                        gid=marks.gid(f"{fmt}, {machine}: {mean:.2f}× the speed of "
                                      f"{reference} (geometric mean of {count} models; "
                                      f"{low:.2f}×-{high:.2f}×)"), **style)
                ax.plot([low, high], [y, y], color="black", lw=0.8, zorder=3)
        ax.axvline(1.0, color="grey", lw=1, ls="--")
        ax.set_xscale("log")
        _unit_axis(ax, "x")
        ax.set_title(title)
        ax.set_xlabel(f"speed relative to {reference} (> 1×: faster)")
        ax.set_yticks(range(len(formats)), formats)
        ax.set_ylim(len(formats) - 0.5, -0.5)
        svgs.append(to_svg(fig, marks))
    legend = [(m, {"color": plt.get_cmap("tab10")(j % 10), "lw": 6})
              for j, m in enumerate(machines)]
    return panels_html([*svgs, _legend_svg([], legend)])
