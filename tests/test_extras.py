"""Optional parts: what is missing is named with the extra that installs it, and measuring
goes on without it."""

from __future__ import annotations

import numpy as np
import pytest

from persistbench.commands import main as cli
from persistbench.commands.options import report_after_run
from persistbench.sources import extras
from persistbench.sources.formats import FORMATS, Unsupported


@pytest.fixture
def without(monkeypatch):
    """Pretend an extra's modules are not installed."""
    def hide(extra: str) -> None:
        monkeypatch.setitem(extras.EXTRAS, extra, ("persistbench_absent_module",))
    return hide


def test_installed_extras_are_not_reported_missing():
    assert extras.missing("onnx") is None and extras.missing("report") is None


def test_an_onnx_cell_without_the_stack_is_unsupported_naming_the_extra(tmp_path, without):
    from sklearn.linear_model import LogisticRegression

    X = np.arange(20, dtype=float).reshape(10, 2)
    est = LogisticRegression().fit(X, (X[:, 0] > 9).astype(int))
    without("onnx")
    with pytest.raises(Unsupported, match=r"persistbench\[onnx\]"):
        FORMATS["onnx"].dump(est, tmp_path / "m.onnx", X)


def test_measuring_without_the_report_extra_says_how_to_get_the_page(tmp_path, without,
                                                                    capsys):
    without("report")
    assert report_after_run(tmp_path / "results.json") == 0
    err = capsys.readouterr().err
    assert "persistbench[report]" in err and "persistbench report" in err
    assert cli.main(["report", str(tmp_path / "results.json")]) == 2
    assert "persistbench[report]" in capsys.readouterr().err
