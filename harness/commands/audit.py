"""`persistbench audit FILE`: what loading FILE would import and call, read without loading
it, then what a confined load of it really tried."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="what loading FILE would import and call: read without "
                                     "loading it, then loaded in a confined child (exit 0 "
                                     "clean, 1 flagged, 2 not a model file the audit "
                                     "understands)")
    p.add_argument("file", type=Path, metavar="FILE", nargs="*",
                   help="one or more model files (several share the libraries' start-up)")
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
    if args.regenerate_allowlist:
        from persistbench.audit.allowlist import main as regenerate

        return regenerate()
    if not args.file:
        raise _usage_error("audit: give a FILE (or --regenerate-allowlist)")
    trusted = tuple(n.strip() for n in (args.trust or "").split(",") if n.strip())
    early = None
    if len(args.file) == 1 and not args.static_only and args.file[0].is_file():
        # one file: its load child starts first and imports while the rest starts here and
        # the static walk runs (a fork of this process importing only the walk's libraries)
        from persistbench.schedule.launch import start_ahead

        early = start_ahead(args.file[0], trusted)
    if not args.static_only:
        from persistbench.schedule.confine import unavailable

        reason = unavailable()
        if reason:
            _cancel(early)
            raise _usage_error(f"audit: {reason}; the load stage needs it: pass --static-only "
                             "to audit without loading")
    from persistbench.schedule.forked import can_fork, preload, single_threaded

    if early:
        return _audit_one(args.file[0], args, trusted, single_threaded(), False, early)
    fork = False
    if not args.static_only:  # both stages forked from here, once their libraries are in
        preload()
        fork = can_fork()
    statuses = [_audit_one(path, args, trusted, fork, several=len(args.file) > 1)
                for path in args.file]
    return max(statuses)


def _usage_error(message: str) -> Exception:
    """The command line's usage error, imported only when raised: its module imports numpy,
    which nothing else the audit's own process runs needs."""
    from persistbench.sources.models import UsageError

    return UsageError(message)


def _cancel(early) -> None:
    if early:
        from persistbench.schedule.launch import cancel

        cancel(early)


def _audit_one(path: Path, args, trusted: tuple[str, ...], fork: bool, several: bool,
               early=None) -> int:
    """Both stages for one file, its report printed; its exit status. `early`: the load
    stage's child, started ahead (`launch.start_ahead`); the static walk is then forked
    from this process without its libraries preloaded."""
    import json
    import sys
    import time

    from persistbench.audit import Unreadable, render
    from persistbench.schedule.capped import audit_capped

    started = time.monotonic()
    try:  # in a child whose memory and time the kernel caps, confined where it can be
        report = audit_capped(path, trusted, confined=not args.static_only, fork=fork)
    except Unreadable as exc:
        _cancel(early)
        if args.json:
            print(json.dumps({"path": str(path), "exit_status": 2, "error": str(exc)}))
        if not several:
            raise _usage_error(f"{path}: cannot audit: {exc}") from exc
        print(f"persistbench: {path}: cannot audit: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        _cancel(early)
        raise
    if not args.static_only:
        from persistbench.schedule.detonate import add_load_stage

        add_load_stage(report, trusted, started, fork=fork and not early, ahead=early)
    report.details["audit_seconds"] = round(time.monotonic() - started, 3)
    if args.json:  # several files: one JSON document per line
        print(json.dumps(report.to_json(), indent=None if several else 1, ensure_ascii=True))
    else:
        print(render(report))
    return report.exit_status
