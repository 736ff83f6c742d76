"""The example notebook runs, cell by cell, in a real Jupyter kernel, and shows what it
promises: the verdict table, the tidy table, a plot. Any cell that raises fails the test.

About 45-60 s here (three formats, three samples a phase): marked slow, CI runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parent.parent / "examples" / "advise_in_a_notebook.ipynb"


@pytest.mark.slow
def test_example_notebook_runs_in_a_jupyter_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the dev extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra is not installed")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # raises CellExecutionError, naming the cell and its traceback, if any cell errors
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any('<table class="verdict">' in h and "smallest file" in h for h in html)
    assert any("protocol" in h and "warm-repeated" in h for h in html)  # the tidy table
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
    assert len(list((tmp_path / "results").glob("run-*.json"))) == 1
