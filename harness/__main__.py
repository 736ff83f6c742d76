"""The `persistbench` entry point: Ctrl-C at any moment ends with one line, never a traceback
(not even one through numpy's imports while the libraries are still loading).

An interrupted run then ends the way an interrupted program should: killed by SIGINT once
Python has finished its clean-up (a shell reports status 130). A shell loop running
persistbench stops there too; after an exit(130) it would go on to the next command as if
nothing had been pressed. It is also the only ending Python guarantees: a Ctrl-C that lands
in a string `exec` (dataclasses, namedtuples: common while modules import) makes Python end
by SIGINT whatever status the program chose.
"""

import sys


def _quiet_about_ctrl_c(kind, value, traceback) -> None:
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)


def main() -> int:
    try:
        from persistbench.commands.main import main as cli_main

        return cli_main()
    except KeyboardInterrupt as exc:
        if not getattr(exc, "reported", False):
            print("persistbench: interrupted", file=sys.stderr)
        sys.excepthook = _quiet_about_ctrl_c
        raise


if __name__ == "__main__":  # children started by the forkserver re-import this module
    raise SystemExit(main())
