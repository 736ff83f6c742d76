"""Evaluation rows for a model that came as a file: read from the user's table, or synthesized.

A model file carries no rows to predict on, yet every experiment checks predictions. The
user's own table is the faithful source (a DataFrame keeps column names and dtypes, so a
`ColumnTransformer` finds its columns). Without one, rows are synthesized only from what the
fitted estimator itself declares: the number and names of its input columns, the categories
its fitted encoders saw, the centre and spread its fitted scalers saw. A column whose kind
the estimator does not reveal is not guessed: the user is asked for `--data` instead.

Runs inside the child process that loads the model; the harness's own process only checks
that the table's reader is installed (`check_readable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from persistbench.sources.models import UsageError

EVAL_ROWS = 500  # as many as the zoo keeps for its own models
TABLE_SUFFIXES = {".npy": (), ".csv": ("pandas",), ".parquet": ("pandas", "pyarrow")}
EXTRA_HINT = "pip install 'persistbench[data]'"


class RowsNeeded(Exception):
    """The estimator does not declare enough to synthesize rows; the message says what."""


@dataclass
class Rows:
    X: Any
    origin: str  # one line for the user and the results file: where the rows came from


def check_readable(path: Path) -> None:
    """Refuse a missing file, an unknown suffix or a missing reader before any work starts."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UsageError(f"--data {path}: unknown kind {suffix or '(no suffix)'!r}; "
                         f"give X.npy, table.csv or table.parquet")
    if not path.is_file():
        raise UsageError(f"--data {path}: no such file")
    for module in TABLE_SUFFIXES[suffix]:
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"--data {path}: reading {suffix} files needs {module}, which is "
                             f"not installed; {EXTRA_HINT}") from None


def read_table(path: Path) -> Any:
    """X.npy as an array (never unpickled), a CSV or Parquet table as a DataFrame."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    import pandas as pd

    return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)


def rows_from_table(est: Any, path: Path, n: int = EVAL_ROWS, table: Any = None) -> Rows:
    """The first `n` rows of the table (read from `path` unless given), cut to the columns
    the estimator was fitted on."""
    table = read_table(path) if table is None else table
    names = getattr(est, "feature_names_in_", None)
    width = getattr(est, "n_features_in_", None)
    total = len(table)
    if total == 0:
        raise RowsNeeded(f"--data {path.name} has no rows")
    dropped: list[str] = []
    if hasattr(table, "columns"):
        if names is not None:
            wanted = [str(c) for c in names]
            missing = [c for c in wanted if c not in table.columns]
            if missing:
                raise RowsNeeded(f"--data {path.name} lacks column(s) the model was fitted on: "
                                 f"{', '.join(missing[:10])}")
            dropped = [str(c) for c in table.columns if c not in wanted]
            table = table[wanted]
        else:  # fitted on an array: hand it an array, not names it never saw
            table = table.to_numpy()
    elif table.ndim != 2:
        raise RowsNeeded(f"--data {path.name}: expected a 2-D array, got shape {table.shape}")
    if names is None and width is not None and table.shape[1] != width:
        raise RowsNeeded(f"--data {path.name} has {table.shape[1]} columns; the model was "
                         f"fitted on {width}")
    X = table[:n]
    origin = f"{len(X)} of {total} rows of {path.name}"
    if dropped:
        origin += f" (columns not used by the model left out: {', '.join(dropped[:5])}" + \
                  (" …)" if len(dropped) > 5 else ")")
    return Rows(X, origin)


# --------------------------------------------------------------------------- synthesized

def _steps(transformer: Any) -> list[Any]:
    """A transformer and, for a pipeline, each of its steps (what fitted state it holds)."""
    return [s for _, s in transformer.steps] if hasattr(transformer, "steps") else [transformer]


def _columns_of(selection: Any, names: list[str]) -> list[str]:
    """The names a ColumnTransformer entry selected (names, indices or a boolean mask)."""
    picked = np.asarray(selection)
    if picked.dtype == bool:
        return [n for n, keep in zip(names, picked, strict=False) if keep]
    if picked.dtype.kind in "iu":
        return [names[i] for i in picked.ravel()]
    return [str(c) for c in picked.ravel()]


def _column_kinds(est: Any, names: list[str]) -> dict[str, Any]:
    """Per column: a category array, ("numeric", centre, spread), or why it is unknown (str).

    Only fitted state counts: categories an encoder saw, statistics a scaler or imputer saw,
    and the columns a ColumnTransformer sends to numeric-only or dropped branches.
    """
    first = _steps(est)[0]
    if not hasattr(first, "transformers_"):
        # No column router: a scikit-learn estimator fitted on named columns takes numbers.
        return {n: ("numeric", 0.0, 1.0) for n in names}
    kinds: dict[str, Any] = {}
    for label, transformer, selection in first.transformers_:
        columns = _columns_of(selection, names)
        if transformer in ("drop", "passthrough"):
            # dropped: any value does; passed through: the estimator after it takes numbers
            kinds.update({c: ("numeric", 0.0, 1.0) for c in columns})
            continue
        steps = _steps(transformer)
        encoder = next((s for s in steps if hasattr(s, "categories_")), None)
        if encoder is not None and len(encoder.categories_) == len(columns):
            kinds.update({c: np.asarray(cats) for c, cats in zip(columns, encoder.categories_,
                                                                  strict=True)})
            continue
        centre = spread = None
        for step in steps:
            if hasattr(step, "mean_") and getattr(step, "scale_", None) is not None:
                centre, spread = step.mean_, step.scale_
                break
            statistics = getattr(step, "statistics_", None)
            if statistics is not None and np.asarray(statistics).dtype.kind in "fiu":
                centre, spread = statistics, np.ones(len(columns))
                break
        if centre is not None and len(centre) == len(columns):
            kinds.update({c: ("numeric", float(m), float(s) or 1.0)
                          for c, m, s in zip(columns, centre, spread, strict=True)})
            continue
        what = type(steps[-1]).__name__
        kinds.update({c: f"column {c!r} goes to {label} ({what}), which does not reveal "
                         "what it holds" for c in columns})
    return kinds


def synthesize(est: Any, n: int = EVAL_ROWS, seed: int = 0) -> Rows:
    """Rows built from the estimator's declared inputs, or `RowsNeeded` saying what is missing."""
    rng = np.random.default_rng(seed)
    names = getattr(est, "feature_names_in_", None)
    width = getattr(est, "n_features_in_", None)
    if names is None:
        if width is None:
            raise RowsNeeded(f"{type(est).__name__} declares neither n_features_in_ nor "
                             "feature_names_in_")
        if hasattr(_steps(est)[0], "transformers_"):
            raise RowsNeeded("its ColumnTransformer was fitted on an array without column "
                             "names, so the kind of each column is unknown")
        return Rows(rng.standard_normal((n, int(width))),
                    f"{n} synthesized rows: {width} numeric columns, standard normal")
    names = [str(c) for c in names]
    kinds = _column_kinds(est, names)
    unknown = [k for k in kinds.values() if isinstance(k, str)]
    if unknown:
        raise RowsNeeded(unknown[0] + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1
                                       else ""))
    try:
        import pandas as pd
    except ImportError:
        raise RowsNeeded(f"it was fitted on named columns, which needs pandas to rebuild; "
                         f"{EXTRA_HINT}") from None
    columns = {}
    for name in names:
        kind = kinds[name]
        if isinstance(kind, tuple):
            _, centre, spread = kind
            columns[name] = centre + spread * rng.standard_normal(n)
        else:
            seen = kind[~pd.isna(kind)] if kind.dtype == object else kind
            columns[name] = rng.choice(seen, size=n)
    n_cat = sum(not isinstance(kinds[c], tuple) for c in names)
    return Rows(pd.DataFrame(columns, columns=names),
                f"{n} synthesized rows: {len(names) - n_cat} numeric columns (centre and spread "
                f"of the fitted scalers, else standard normal), {n_cat} categorical (drawn from "
                "the fitted encoders' categories)")


ASK_FOR_DATA = "pass --data with rows it accepts (X.npy, table.csv or table.parquet)"


def _check_predicts(est: Any, rows: Rows) -> None:
    """Rows the model cannot predict on would fail every cell: say so once, up front."""
    from persistbench.sources.formats import describe_exception

    try:
        est.predict(rows.X[:5])
        return
    except Exception as exc:
        why = describe_exception(exc)
    raise RowsNeeded(f"the model cannot predict on {rows.origin.split(':')[0]} ({why})")


def evaluation_rows(est: Any, data: Path | None, seed: int = 0, table: Any = None) -> Rows:
    """The user's rows when given (`table`: already read from `data`), else synthesized ones;
    `RowsNeeded` when neither works."""
    try:
        rows = (rows_from_table(est, data, table=table) if data is not None
                else synthesize(est, seed=seed))
        _check_predicts(est, rows)
        return rows
    except RowsNeeded as exc:
        why = str(exc)  # raised below, outside the handler: one line, no "caused by" twin
    hint = "" if data is not None else f"; {ASK_FOR_DATA}"
    raise RowsNeeded(f"no evaluation rows for this model: {why}{hint}")
