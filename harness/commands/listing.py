"""`persistbench list`: the zoo's models, the formats, experiments and run profiles."""

from __future__ import annotations

from persistbench.experiments import EXPERIMENT_MODULES, experiment
from persistbench.schedule.profiles import PROFILES
from persistbench.sources.formats import FORMATS
from persistbench.sources.models import MODELS


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="models, sizes, formats, experiments, profiles")
    p.set_defaults(func=execute)

def execute(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    models = Table("model", "tags", "what it is", title="models (sizes: small, medium, large)")
    for spec in MODELS.values():
        models.add_row(spec.name, ", ".join(spec.tags), spec.description)
    formats = Table("format", "library", "runs code on load", "memory maps", "compression",
                    title="formats")
    for fmt in FORMATS.values():
        formats.add_row(fmt.name, fmt.library, "yes" if fmt.executes_code_on_load else "no",
                        "yes" if fmt.memory_maps else "no", fmt.compression or "-")
    experiments = Table("experiment", "what it measures", title="experiments")
    for name in EXPERIMENT_MODULES:
        experiments.add_row(name, experiment(name).DESCRIPTION)
    profiles = Table("profile", "sizes", "repeat", "starts", "workers", title="profiles")
    for name, prof in PROFILES.items():
        profiles.add_row(name, ", ".join(prof["sizes"]),
                         *(str(prof[k]) for k in ("repeat", "starts", "workers")))
    for table in (models, formats, experiments, profiles):
        console.print(table)
    return 0
