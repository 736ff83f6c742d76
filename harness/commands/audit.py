"""`persistbench audit FILE`: what loading FILE would import and call, read without loading
it, then what a confined load of it really tried."""

from __future__ import annotations

from pathlib import Path

from persistbench.sources.models import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="what loading FILE would import and call: read without "
                                     "loading it, then loaded in a confined child (exit 0 "
                                     "clean, 1 flagged, 2 not a model file the audit "
                                     "understands)")
    p.add_argument("file", type=Path, metavar="FILE", nargs="?")
    p.add_argument("--regenerate-allowlist", action="store_true",
                   help="rewrite the allow-list from what the installed scikit-learn, numpy, "
                        "scipy, joblib and pandas pickle and their public API without side "
                        "effects (about a minute)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--trust", metavar="MODULES",
                   help="comma-separated module prefixes of your own code to accept")
    p.add_argument("--static-only", action="store_true",
                   help="read the file only; skip the confined load (needed where this "
                        "machine cannot confine a process)")
    p.set_defaults(func=execute)


def execute(args) -> int:
    """Exit 0 clean, 1 flagged, 2 not a model file the audit understands: usable as a gate
    before loading a file."""
    import json
    import time

    from persistbench.audit import Unreadable, render
    from persistbench.schedule.capped import audit_capped

    if args.regenerate_allowlist:
        from persistbench.audit.allowlist import main as regenerate

        return regenerate()
    if args.file is None:
        raise UsageError("audit: give a FILE (or --regenerate-allowlist)")
    trusted = tuple(n.strip() for n in (args.trust or "").split(",") if n.strip())
    if not args.static_only:
        from persistbench.schedule.confine import unavailable

        reason = unavailable()
        if reason:
            raise UsageError(f"audit: {reason}; the load stage needs it: pass --static-only "
                             "to audit without loading")
    started = time.monotonic()
    try:  # in a child whose memory and time the kernel caps, confined where it can be
        report = audit_capped(args.file, trusted, confined=not args.static_only)
    except Unreadable as exc:
        if args.json:
            print(json.dumps({"path": str(args.file), "exit_status": 2, "error": str(exc)}))
        raise UsageError(f"{args.file}: cannot audit: {exc}") from exc
    if not args.static_only:
        from persistbench.schedule.detonate import add_load_stage

        add_load_stage(report, trusted, started)
    print(json.dumps(report.to_json(), indent=1, ensure_ascii=True) if args.json
          else render(report))
    return report.exit_status
