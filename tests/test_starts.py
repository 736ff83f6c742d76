"""The shared server starts: the import order cells share, and parts with nothing left to
import folded into their parent (no interpreter is started here)."""

from persistbench.experiments.starts import lifted, plan, segments


def test_segments_put_the_packages_and_the_format_library_before_the_files_modules():
    modules = ["numpy", "numpy._core.numeric", "sklearn.linear_model._logistic", "skops.io"]
    assert segments(modules) == [("numpy",), ("sklearn",), ("skops.io",),
                                 ("numpy._core.numeric", "sklearn.linear_model._logistic")]
    assert segments(["numpy", "onnxruntime"]) == [("numpy",), ("onnxruntime",)]
    # a file whose own modules include the format's package: the package still comes after
    # scikit-learn, so the cell shares scikit-learn's import with the others
    custom = ["cloudpickle.cloudpickle", "numpy", "sklearn.pipeline", "cloudpickle"]
    assert segments(custom)[:3] == [("numpy",), ("sklearn",), ("cloudpickle",)]


def entry(cell: str, modules: list[str]) -> dict:
    return {"cell_id": cell, "format": "pickle", "model": "m", "rows": "r", "modules": modules}


def test_cells_share_their_common_prefix():
    tree = plan([entry("a", ["numpy", "sklearn.svm._classes"]),
                 entry("b", ["numpy", "sklearn.svm._classes", "joblib"]),
                 entry("c", ["numpy", "onnxruntime"])])
    (numpy,) = tree["children"]
    assert numpy["modules"] == ["numpy"]
    assert sorted(c["modules"][0] for c in numpy["children"]) == ["onnxruntime", "sklearn"]


def test_a_part_already_imported_is_folded_into_its_parent_and_equal_parts_merge():
    tree = plan([entry("pickle", ["numpy", "sklearn.svm._classes"]),
                 entry("joblib", ["numpy", "sklearn.svm._classes", "joblib"]),
                 entry("skops", ["numpy", "sklearn.svm._classes", "skops.io"])])
    sklearn = tree["children"][0]["children"][0]
    # after sklearn, joblib is already imported: its part folds away, and its cell joins the
    # pickle cell under one import of the model's module
    leaves, children = lifted(sklearn, {"numpy", "sklearn", "joblib"})
    assert leaves == []
    by_modules = {tuple(c["modules"]): c for c in children}
    assert set(by_modules) == {("sklearn.svm._classes",), ("skops.io",)}
    merged = by_modules[("sklearn.svm._classes",)]
    assert sorted(leaf["cell_id"] for leaf in merged["leaves"]) == ["joblib", "pickle"]
    # after skops.io, which imports every estimator module, the model's part folds away too
    skops = by_modules[("skops.io",)]
    leaves, children = lifted(skops, {"sklearn.svm._classes"})
    assert [leaf["cell_id"] for leaf in leaves] == ["skops"] and children == []
