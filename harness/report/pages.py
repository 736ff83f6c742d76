"""The templates' environment, shared by every page (a machine's report, the index, the
cross-machine page, the comparison page): one place for what templates may call."""

from __future__ import annotations

from functools import cache

import jinja2

from persistbench import __version__
from persistbench.report.blocks import Figure, Paragraph, Table
from persistbench.report.values import Hover, Num
from persistbench.results.schema import STATUSES


def kind(value) -> str:
    """What the templates branch on to render any value the views produce."""
    if isinstance(value, Num):
        return "num"
    if isinstance(value, Hover):
        return "hover"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "none"
    for cls, name in ((Table, "table"), (Figure, "figure"), (Paragraph, "paragraph")):
        if isinstance(value, cls):
            return name
    return "str"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("persistbench.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(kind=kind, num=Num, bad_statuses=[s for s in STATUSES if s != "ok"],
                       version=__version__)
    return env
