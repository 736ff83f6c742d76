"""Reports from results files: per-machine HTML, comparisons, a Markdown summary.

Nothing here measures; everything is read from results files (`persistbench.results.schema.read`).
A new experiment gets its own section with one `@view` function in `persistbench.report.views`.
"""
