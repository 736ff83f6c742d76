"""persistbench from Python: measure a fitted estimator where it lives, in a notebook.

`advise(estimator, X)` measures every format on an estimator handed over in memory,
`run(...)` does what `persistbench run` does, `read_results(paths)` reads results files back;
each returns one `Results` (the verdict as HTML in a notebook, `.to_pandas()`, `.report()`,
`.compare()`). Bad input raises `ValueError` with one line saying what to change; an interrupt
raises `Interrupted`, which carries what was measured until then.

It sits at the top beside `commands` and calls the same planning, runner and reports the
command line calls; nothing in the package imports it but the package's lazy exports.
"""

from persistbench.api.measure import Interrupted, advise, run
from persistbench.api.results import Results, read_results

__all__ = ["Interrupted", "Results", "advise", "read_results", "run"]
