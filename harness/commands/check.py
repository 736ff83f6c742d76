"""`persistbench check`: compare a model's sidecar with this environment, and re-score it."""

from __future__ import annotations

from pathlib import Path

from persistbench.commands.options import positive


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="compare a model's sidecar with this environment "
                                     "(exit 1 on a scikit-learn version or score mismatch)")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--sidecar", type=Path, help="default: MODEL.meta.json")
    p.add_argument("--data", nargs=2, type=Path, metavar=("X.npy", "Y.npy"),
                   help="re-score the model on this data (in a child process)")
    p.add_argument("--tolerance", type=positive(float), default=0.05,
                   help="allowed distance from the saved cross-validation score (default 0.05)")
    p.add_argument("--json", action="store_true", help="findings as JSON")
    p.set_defaults(func=execute)

def execute(args) -> int:
    import json

    from persistbench.commands import sidecar as metadata

    data = tuple(args.data) if args.data else None
    found = metadata.check(args.model, args.sidecar, data, args.tolerance)
    if args.json:
        print(json.dumps(metadata.findings_json(found), indent=1, default=str))
    else:
        for finding in found:
            print(finding.line())
    return 1 if any(f.fatal and not f.matches for f in found) else 0
