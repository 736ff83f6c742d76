"""A user's own model file as a model source: audited, registered, loaded only in a child.

The file is the user's, so it is untrusted until shown otherwise. `admit` audits it without
loading it and refuses it when the audit flags anything the user has not explicitly trusted
(`--trust` must name exactly the flagged modules, no more). `register` records what was
admitted (the file's sha256, the evaluation table, the trusted names) in a small descriptor
in the model cache, and names the model `file:<file name>@<key>`, so every child process of
the runner resolves that name to the same `ModelSpec` as zoo models and `--model` factories
(`persistbench.sources.resolve.resolve_spec`). The spec's build step, run by the runner in a child,
loads the file from bytes whose sha256 must match the audited one, so the audited file is the one
loaded, and the fitted estimator and its evaluation rows go into the same cache as zoo models.

An estimator handed over in Python (`persistbench.advise`) takes the same path from
`register_object`: the harness writes it (and its rows) itself, so there is nothing to audit.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persistbench.sources.models import (
    CUSTOM_SIZE,
    MODEL_FILE_PREFIX,
    MODEL_FILE_TAG,
    ModelSpec,
    UsageError,
    cache_dir,
    cache_path,
)

LOADABLE = ("pickle", "joblib", "cloudpickle", "skops")
CHUNK = 1 << 20

if TYPE_CHECKING:
    from persistbench.audit import AuditReport


class Refused(Exception):
    """The audit flagged the file and `--trust` does not cover it: the text says why."""


class NotAnEstimator(Exception):
    """The file loaded, but holds no object with `predict`: nothing to measure."""


@dataclass(frozen=True)
class ModelFile:
    """What was admitted: enough for a child process to load exactly that file."""

    name: str
    path: str
    sha256: str
    format: str
    data: str | None
    data_sha256: str | None
    trusted: tuple[str, ...]
    skops_trusted: tuple[str, ...]  # the types skops lists, each allowed or trusted by the audit
    # Written by the harness from an estimator (and rows) handed over in Python: not audited,
    # and its rows file is a pickle of the user's own rows (`register_object`).
    written_by_harness: bool = False
    unconfined: bool = False  # the user chose to load it without confinement (`--unconfined`)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def descriptor_dir() -> Path:
    return cache_dir().parent / "model-files"


def _covers(trusted: str, flagged: str) -> bool:
    return flagged == trusted or flagged.startswith(trusted + ".")


# Findings about a name the file imports or calls, which a user can review and trust; the
# others (trailing data, a polyglot, a budget exceeded) are about the file's structure.
TRUSTABLE_KINDS = ("import", "call")


def admit(path: Path, trusted: tuple[str, ...] = (), auditor=None) -> AuditReport:
    """Audit the file (nothing loaded); return the report, or raise `Refused` / `UsageError`.

    `auditor(path, trusted)`: how the static audit is run (the commands run it in a capped
    child process); in this process by default."""
    from persistbench.audit import Unreadable, render

    if auditor is None:
        from persistbench.audit import audit as auditor
    audit = auditor
    try:
        report = audit(path, ())
    except Unreadable as exc:
        raise UsageError(f"{path}: cannot read it as a model file: {exc}") from exc
    if report.format not in LOADABLE:
        raise UsageError(f"{path}: a {report.format} file; advise measures Python estimators "
                         f"saved with {', '.join(LOADABLE)}")
    flagged = [f.name for f in report.findings]
    unused = [t for t in trusted if not any(_covers(t, name) for name in flagged)]
    if unused:
        raise UsageError(f"--trust {', '.join(unused)}: nothing the audit flagged is under "
                         f"{'it' if len(unused) == 1 else 'them'}; trust only flagged names"
                         + (f" ({', '.join(flagged)})" if flagged else " (nothing is flagged)"))
    if trusted:
        report = audit(path, trusted)
    if report.findings:
        names = [f for f in report.findings if f.kind in TRUSTABLE_KINDS]
        modules = sorted({f.name.rpartition(".")[0] or f.name for f in names})
        structural = sorted({f.kind for f in report.findings if f.kind not in TRUSTABLE_KINDS})
        advice = (f"the file itself is malformed for its loaders ({', '.join(structural)}): "
                  "no --trust admits that; re-save the model from its source"
                  if structural else "if you trust its source and every name above, review "
                  f"them and pass --trust {' '.join(modules)}")
        raise Refused(f"{render(report)}\nrefused: {path} is not loaded; {advice}")
    if report.error:
        raise UsageError(f"{path}: the audit could not read all of it ({report.error})")
    return report


def _skops_admitted(path: Path, report: AuditReport) -> tuple[str, ...]:
    """The types skops will ask to trust, each one the audit judged (allowed or --trust).

    `get_untrusted_types` reads the archive's schema only, nothing is constructed; the audit
    has already read the same schema within its budgets.
    """
    import skops.io as sio

    judged = set(report.details.get("types", ()))
    return tuple(sorted(t for t in sio.get_untrusted_types(file=path) if t in judged))


def register(path: Path, data: Path | None, report: AuditReport,
             trusted: tuple[str, ...] = (), unconfined: bool = False) -> ModelFile:
    """Record an admitted file so child processes can resolve its model name."""
    path = Path(path).resolve()
    skops_trusted = _skops_admitted(path, report) if report.format == "skops" else ()
    return _record(path, Path(data).resolve() if data else None, report.format,
                   tuple(trusted), skops_trusted, unconfined=unconfined)


def _record(path: Path, data: Path | None, file_format: str, trusted: tuple[str, ...],
            skops_trusted: tuple[str, ...], written_by_harness: bool = False,
            unconfined: bool = False) -> ModelFile:
    """The descriptor every child reads: named by a key over everything that was admitted."""
    sha = sha256_file(path)
    data_sha = sha256_file(data) if data else None
    key_source = json.dumps([sha, data_sha, sorted(trusted), skops_trusted]
                            + (["unconfined"] if unconfined else []))
    key = hashlib.sha256(key_source.encode()).hexdigest()[:12]
    entry = ModelFile(name=f"{MODEL_FILE_PREFIX}{path.name}@{key}", path=str(path), sha256=sha,
                      format=file_format, data=str(data) if data else None,
                      data_sha256=data_sha, trusted=trusted, skops_trusted=skops_trusted,
                      written_by_harness=written_by_harness, unconfined=unconfined)
    from persistbench.results.schema import write_atomic

    write_atomic(descriptor_dir() / f"{key}.json", asdict(entry))
    return entry


def _write_pickled(obj: Any, folder: Path, name: str) -> Path:
    """`obj` pickled with cloudpickle into `folder/<sha256>/name`, once per content.

    cloudpickle, because a notebook's estimator often holds classes or functions defined in
    the notebook itself (`__main__`), which a plain pickle names but a child cannot import.
    """
    import tempfile

    import cloudpickle

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as fh:
        cloudpickle.dump(obj, fh, protocol=5)
    part = Path(fh.name)
    target = folder / sha256_file(part)[:16] / name
    if target.exists():
        part.unlink()
    else:
        target.parent.mkdir(exist_ok=True)
        part.replace(target)
    return target


def register_object(estimator: Any, X: Any) -> ModelFile:
    """An estimator and rows handed over in Python, written once by the harness and
    registered like a model file; no audit, since the harness wrote the file itself.

    The rows kept are the first `EVAL_ROWS` (what the experiments predict on); the child that
    loads the estimator checks it predicts on them, as for a file and its `--data`.
    """
    from persistbench.sources.eval_rows import EVAL_ROWS

    if not callable(getattr(estimator, "predict", None)):
        raise UsageError(f"a {type(estimator).__name__} is not an estimator with predict; "
                         "pass a fitted estimator or pipeline")
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] == 0:
        raise UsageError(f"X must be a 2-D array or DataFrame with rows, got "
                         f"{type(X).__name__}{f' of shape {shape}' if shape else ''}")
    rows = X.iloc[:EVAL_ROWS] if hasattr(X, "iloc") else X[:EVAL_ROWS]
    folder = descriptor_dir() / "objects"
    try:
        path = _write_pickled(estimator, folder, f"{type(estimator).__name__}.pkl")
    except Exception as exc:
        raise UsageError(f"the estimator cannot be pickled, so it cannot be measured: "
                         f"{type(exc).__name__}: {exc}") from None
    data = _write_pickled(rows, folder, "X.pkl")
    return _record(path, data, "cloudpickle", (), (), written_by_harness=True)


def lookup(name: str) -> ModelFile:
    key = name.rpartition("@")[2]
    try:
        fields = json.loads((descriptor_dir() / f"{key}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise UsageError(f"model {name!r} is not a model file registered on this machine; "
                         "pass the file again with `persistbench advise FILE` or "
                         "`persistbench run --model-file FILE`") from None
    fields["trusted"] = tuple(fields["trusted"])
    fields["skops_trusted"] = tuple(fields["skops_trusted"])
    return ModelFile(**fields)


def _verified_bytes(path: str, sha256: str, what: str) -> bytes:
    blob = Path(path).read_bytes()
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise RuntimeError(f"{what} {path} changed after it was audited; pass it again")
    return blob


def load_estimator(entry: ModelFile) -> tuple[Any, list[str]]:
    """Only ever called in a child process: the audited bytes, and the loader's warnings."""
    blob = _verified_bytes(entry.path, entry.sha256, "model file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if entry.format == "skops":
            import skops.io as sio

            est = sio.loads(blob, trusted=list(entry.skops_trusted))
        else:  # joblib reads plain pickles, cloudpickle files and every joblib codec
            import joblib

            est = joblib.load(io.BytesIO(blob))
    if not callable(getattr(est, "predict", None)):
        raise NotAnEstimator(f"{Path(entry.path).name} holds a {type(est).__name__}, not an "
                             "estimator with predict")
    return est, sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught})


def describe_estimator(est: Any) -> str:
    """One line: the class, and a pipeline's steps, as a user would recognise them."""
    names = [type(est).__name__]
    for _, step in getattr(est, "steps", []):
        inner = [type(t).__name__ for _, t, _ in getattr(step, "transformers_", [])
                 if not isinstance(t, str)]
        names.append(type(step).__name__ + (f"({', '.join(inner)})" if inner else ""))
    return names[0] + (f": {' -> '.join(names[1:])}" if len(names) > 1 else "")


def _info_path(spec: ModelSpec, seed: int) -> Path:
    """Beside the cached model, in the one folder its confined loader may write."""
    return cache_path(spec, CUSTOM_SIZE, seed).with_suffix(".info.json")


def spec_for(name: str) -> ModelSpec:
    """The registered file as a `ModelSpec`: same cache, runner and results as any model."""
    from persistbench.sources.eval_rows import evaluation_rows

    entry = lookup(name)

    def build(size: str, seed: int):
        est, load_warnings = load_estimator(entry)
        data = table = None
        if entry.data:
            blob = _verified_bytes(entry.data, entry.data_sha256, "--data")
            data = Path(entry.data)
            if entry.written_by_harness:  # the user's own rows, pickled by the harness
                import pickle

                table = pickle.loads(blob)
        rows = evaluation_rows(est, data, seed, table)
        from persistbench.results.schema import write_atomic

        write_atomic(_info_path(spec, seed), {
            "file": entry.path, "file_sha256": entry.sha256, "file_format": entry.format,
            "estimator": describe_estimator(est),
            "estimator_class": f"{type(est).__module__}.{type(est).__qualname__}",
            "evaluation_rows": rows.origin, "load_warnings": load_warnings,
            "trusted": list(entry.trusted)})
        return est, rows.X

    def info(size: str, seed: int) -> dict:
        try:
            return json.loads(_info_path(spec, seed).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    params = {"file_sha256": entry.sha256, "data_sha256": entry.data_sha256,
              "trusted": list(entry.trusted), "confined": not entry.unconfined}
    spec = ModelSpec(name=name, build=build, tags=("user", MODEL_FILE_TAG),
                     description=f"model file {entry.path} ({entry.format})",
                     params={CUSTOM_SIZE: params}, source=entry.path, info=info)
    return spec
