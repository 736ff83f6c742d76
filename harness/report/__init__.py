"""Reports from results files: per-machine HTML, comparisons, a Markdown summary.

Nothing here measures; everything is read from results files (`harness.results.read`).
A new experiment gets its own section with one `@view` function in `harness.report.views`.
"""
