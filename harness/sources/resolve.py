"""One name for every kind of model a cell can name: a zoo entry, a user's factory
(`pkg.mod:factory`) or a registered model file.

It sits above the zoo and the model-file module, so neither imports the other.
"""

from __future__ import annotations

from persistbench.sources.model_file import spec_for
from persistbench.sources.models import (
    DEFAULT_VARIANTS,
    MODEL_FILE_PREFIX,
    MODELS,
    ModelSpec,
    UsageError,
    user_spec,
)


def resolve_spec(name: str) -> ModelSpec:
    """Find a spec by zoo name, `pkg.mod:factory` or registered model file (children too)."""
    if name in MODELS:
        return MODELS[name]
    if name in DEFAULT_VARIANTS:
        return DEFAULT_VARIANTS[name]
    if name.startswith(MODEL_FILE_PREFIX):
        return spec_for(name)
    if ":" in name:
        return user_spec(name)
    raise UsageError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
