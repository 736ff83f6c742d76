"""Checks that `persistbench ab` sees what it should: environments whose `pickle.load` and
`joblib.load` were made a known fraction slower, an independent measure of that fraction,
and the validation that runs A/A and slowed sessions and prints what was flagged.

Nothing here runs on import (asv imports every module under `benchmarks/`):
`python -m benchmarks.ab_validation.validate --help`.
"""
