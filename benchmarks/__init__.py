"""asv benchmark suites of persistbench (pytest-benchmark suites live in benchmarks/pytest/)."""
