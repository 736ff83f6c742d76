"""The `persistbench` entry point: Ctrl-C while the libraries are still importing (a few
seconds on a busy machine) ends with one line, not a traceback through numpy's imports."""

import sys


def main() -> int:
    try:
        from harness.cli import main as cli_main
    except KeyboardInterrupt:
        print("persistbench: interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":  # children started by the forkserver re-import this module
    raise SystemExit(main())
