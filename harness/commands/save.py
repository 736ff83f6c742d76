"""`persistbench save`: write a model with its metadata sidecar (MODEL.meta.json)."""

from __future__ import annotations

import sys
from pathlib import Path

from persistbench.commands.options import positive
from persistbench.sources.formats import FORMATS, Unsupported
from persistbench.sources.models import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("save", help="save a model with a metadata sidecar (MODEL.meta.json)")
    p.add_argument("source", metavar="MODEL_SOURCE",
                   help="zoo model as name[@size] (e.g. logreg@small) or package.module:factory")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--out", required=True, type=Path, help="model file to write")
    p.add_argument("--train-data", nargs="+", type=Path, metavar="NPY",
                   help="X.npy [Y.npy]: the training data to fingerprint (and score on)")
    p.add_argument("--data-ref", help="a reference to an immutable snapshot of the training data")
    p.add_argument("--script", type=Path,
                   help="source that produced the model (default: the zoo or factory module)")
    score = p.add_mutually_exclusive_group()
    score.add_argument("--cv", type=positive(int), metavar="FOLDS",
                       help="compute a cross-validation score on --train-data")
    score.add_argument("--cv-score", type=float, help="a cross-validation score you computed")
    p.add_argument("--scoring", help="scikit-learn scorer name (default: the estimator's score)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=execute)

def _arrays(paths: list[Path] | None, option: str, need_y: bool) -> tuple:
    from persistbench.commands.sidecar import load_array

    if not paths:
        return None, None
    if len(paths) > 2 or (need_y and len(paths) != 2):
        raise UsageError(f"{option} takes X.npy{' Y.npy' if need_y else ' [Y.npy]'}, "
                         f"got {len(paths)} files")
    X = load_array(paths[0])
    return X, load_array(paths[1]) if len(paths) == 2 else None

def execute(args) -> int:
    from persistbench.commands import sidecar as metadata

    X, y = _arrays(args.train_data, "--train-data", need_y=False)
    if args.cv and y is None:
        raise UsageError("--cv needs --train-data X.npy Y.npy")
    est, X_eval, script, recipe = metadata.fitted_from_source(args.source, args.seed)
    # Without data the recipe that regenerates it (zoo or factory) is the reference.
    reference = args.data_ref or (recipe if X is None else None)
    try:
        sidecar = metadata.save(est, args.out, args.format, X_sample=X_eval, X_train=X,
                                y_train=y, data_reference=reference,
                                script=args.script or script, cv_folds=args.cv,
                                cv_score=args.cv_score, scoring=args.scoring)
    except Unsupported as exc:
        print(f"persistbench: {args.format} cannot save this model: {exc}", file=sys.stderr)
        return 1
    print(f"model: {args.out} ({sidecar['model']['bytes']} bytes, {args.format})")
    print(f"sidecar: {metadata.sidecar_path(args.out)}")
    return 0
