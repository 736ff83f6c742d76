"""Figures as inline SVG (matplotlib, Agg): no image files, no fonts to fetch, no network.

Every chart takes plain numbers already picked out of the cells (SI units) and returns an
`<svg>` string, or None when there is nothing to draw (e.g. asv results hold timings but no
sizes or memory); views decide what to plot, this module only how.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from harness.formats import FORMATS
from harness.report.values import Num

plt.rcParams.update({
    "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
})
MARKERS = "osD^v<>ph*X"


def colour(label: str, labels: Sequence[str]) -> str:
    """One colour per format for the whole report, in registry order."""
    known = [*FORMATS, *[x for x in labels if x not in FORMATS]]
    return plt.get_cmap("tab10" if len(known) <= 10 else "tab20")(known.index(label) % 20)


def marker(label: str, labels: Sequence[str]) -> str:
    known = [*FORMATS, *[x for x in labels if x not in FORMATS]]
    return MARKERS[known.index(label) % len(MARKERS)]


def to_svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: invalid inside HTML


def _legend_below(fig, axes) -> None:
    """One legend for all panels, each label once; none when no panel drew a labelled mark."""
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if names:
        fig.legend(handles, names, loc="upper center", ncol=min(len(names), 6),
                   bbox_to_anchor=(0.5, 0), frameon=False)


def _unit_axis(ax, unit: str, axis: str = "x") -> None:
    """Tick labels in the report's units; minor ticks unlabelled (log axes crowd them)."""
    fmt = FuncFormatter(lambda v, _pos: Num(v, unit).text() if v > 0 else "0")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(fmt)
    target.set_minor_formatter(NullFormatter())


def dot_panels(rows: Sequence[str], panels: Sequence[tuple[str, dict[str, list]]], unit: str,
               scale: str = "log", linthresh: float = 1.0) -> str | None:
    """One row per model, one marker per format, side-by-side panels sharing the rows.

    `panels` is [(title, {format: [value per row or None]})]. Values <= 0 are left out of a
    log axis (a symlog axis keeps them).
    """
    if not any(v is not None and (v > 0 or scale != "log")
               for _, series in panels for values in series.values() for v in values):
        return None
    labels = list(dict.fromkeys(f for _, series in panels for f in series))
    height = 0.9 + 0.32 * len(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.5, height),
                             sharey=True, squeeze=False)
    offsets = {f: (i - (len(labels) - 1) / 2) * 0.6 / max(len(labels), 1)
               for i, f in enumerate(labels)}
    for ax, (title, series) in zip(axes[0], panels, strict=True):
        for fmt, values in series.items():
            pts = [(v, i + offsets[fmt]) for i, v in enumerate(values)
                   if v is not None and (v > 0 or scale != "log")]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, label=fmt,
                           color=colour(fmt, labels), marker=marker(fmt, labels), zorder=3)
        ax.set_xscale(scale, **({"linthresh": linthresh} if scale == "symlog" else {}))
        if scale != "log":  # a linear or symlog axis starts at zero: no exaggerated gaps
            ax.set_xlim(left=0)
            if scale == "linear":
                ax.xaxis.set_major_locator(MaxNLocator(4))
        _unit_axis(ax, unit)
        ax.set_title(title)
        ax.set_yticks(range(len(rows)), list(rows))
        ax.set_ylim(len(rows) - 0.5, -0.5)
    _legend_below(fig, axes[0])
    return to_svg(fig)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Points no other point beats on both axes (smaller and faster), sorted by x."""
    front = []
    for p in sorted(points, key=lambda q: (q[1], q[2])):
        if not front or p[2] < front[-1][2]:
            front.append(p)
    return front


def _panels(n: int, max_cols: int, width: float, height: float = 2.8):
    """A grid of n small panels, the unused cells of its last row hidden."""
    cols = min(max_cols, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(width * cols, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def pareto_grid(groups: dict[str, list[tuple[str, float, float]]], xunit: str,
                yunit: str, xlabel: str, ylabel: str) -> str | None:
    """Small multiples: per model, (format, x, y) points with the Pareto front drawn."""
    if not any(groups.values()):
        return None
    labels = list(dict.fromkeys(p[0] for pts in groups.values() for p in pts))
    fig, axes = _panels(len(groups), max_cols=4, width=3.3)
    for ax, (title, pts) in zip(axes.flat, groups.items(), strict=False):
        for fmt, x, y in pts:
            ax.scatter([x], [y], s=26, color=colour(fmt, labels), marker=marker(fmt, labels),
                       label=fmt, zorder=3)
        front = pareto_front(pts)
        ax.plot([p[1] for p in front], [p[2] for p in front], color="black", lw=1, ls="--",
                zorder=2, label="Pareto front")
        for fmt, x, y in front:
            ax.annotate(fmt, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _unit_axis(ax, xunit, "x")
        _unit_axis(ax, yunit, "y")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    _legend_below(fig, axes.flat)
    fig.tight_layout()
    return to_svg(fig)


def line_grid(groups: dict[str, dict[str, list[tuple[float, float]]]], xlabel: str,
              ylabel: str, yunit: str, logx: bool = True, logy: bool = False,
              reference: float | None = None) -> str | None:
    """Small multiples of lines: per panel, {series: [(x, y), ...]}; `reference` a dashed y."""
    if not any(groups.values()):
        return None
    fig, axes = _panels(len(groups), max_cols=3, width=3.8)
    for ax, (title, series) in zip(axes.flat, groups.items(), strict=False):
        for i, (name, pts) in enumerate(series.items()):
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % len(MARKERS)],
                    color=plt.get_cmap("tab10")(i % 10), label=name, ms=4)
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
    fig.tight_layout()
    return to_svg(fig)
