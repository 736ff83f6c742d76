"""The `persistbench` command line: parse, validate, hand over to one command module.
Nothing is measured here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# The format plugins' variable (`sources.formats.PLUGINS_ENV`), read here so that a command
# needing no format (`audit`) starts without importing the formats, and numpy with them
PLUGINS_ENV = "PERSISTBENCH_FORMATS"


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage is one line on stderr and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


COMMANDS = ("listing", "run", "advise", "report", "compare", "ab", "compat", "portability",
            "save", "check", "audit", "profile")


MODULE_OF = {"list": "listing"}  # commands whose module has another name


def build_parser(only: str | None = None) -> Parser:
    """The command line's parser; `only`: the one command module the arguments name, the
    others not imported (their imports cost a few tenths of a second before `audit` can
    start its first child)."""
    parser = Parser(prog="persistbench",
                    description="Measure how to persist a scikit-learn model on this machine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"persistbench.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if sys.platform == "win32":
        print("persistbench: error: Windows is not supported: per-phase peak memory, page-cache"
              " eviction and forked workers have no equivalent there; run it under WSL 2 "
              "(Linux) or on macOS", file=sys.stderr)
        return 2
    if os.environ.get(PLUGINS_ENV):
        from persistbench.sources.formats import PLUGIN_ERROR

        if PLUGIN_ERROR:
            print(f"persistbench: error: {PLUGIN_ERROR}", file=sys.stderr)
            return 2
    for stream in (sys.stdout, sys.stderr):
        # A file name or a pickled string need not be UTF-8: escape it, never crash on it.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    argv = sys.argv[1:] if argv is None else list(argv)
    named = MODULE_OF.get(argv[0], argv[0]) if argv else None
    args = build_parser(named if named in COMMANDS else None).parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # the classes imported only now: see PLUGINS_ENV
        from persistbench.results.schema import ResultsError
        from persistbench.sources.model_file import Refused
        from persistbench.sources.models import UsageError

        if isinstance(exc, UsageError | ResultsError):
            print(f"persistbench: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, Refused):  # the audit flagged a model file: never loaded
            print(exc, file=sys.stderr)
            return 1
        raise
