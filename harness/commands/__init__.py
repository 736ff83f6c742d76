"""The `persistbench` command line: one module per command, each adding its own parser.

Commands sit on top: they may use scheduling, experiments, environments, sources,
measurement, the audit, results and reports; nothing below imports a command.
"""
