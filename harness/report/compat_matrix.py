"""The compat matrix in the terminal: environments first, then saved-with x loaded-with
outcome counts per format."""

from __future__ import annotations

from persistbench.results.vocabulary import outcome_matrix


def print_matrix(data: dict, console=None) -> None:
    """The environments (library versions, builder, build time), then one table per format:
    rows saved with, columns loaded with, outcome counts inside."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from persistbench.results.units import human_seconds

    console = console or Console()
    envs = data["run"].get("compat_environments") or []
    if envs:
        from persistbench.results.vocabulary import REPORTED_LIBRARIES as REPORTED

        table = Table("library", *(e["sklearn"] for e in envs), title="compat: environments")
        for lib in REPORTED:
            table.add_row(lib, *((e.get("packages") or {}).get(lib) or "-" for e in envs))
        table.add_row("built by", *(e.get("builder") or e["source"] for e in envs))
        table.add_row("build time", *(human_seconds(e.get("build_s")) for e in envs))
        console.print(table)
    for fmt, pairs in outcome_matrix(data["cells"]).items():
        versions = list(dict.fromkeys(v for pair in pairs for v in pair))
        table = Table("saved with \\ loaded with", *versions, title=f"compat: {fmt}")
        for saved in versions:
            row = [escape(", ".join(f"{k} {n}" for k, n in
                                    sorted(pairs.get((saved, b), {}).items())) or "-")
                   for b in versions]
            table.add_row(saved, *row)
        console.print(table)
