"""The white-box attacks on the audit (`benchmarks/audit_corpus/attacks.py`), end to end.

Each file must run its payload under its own loader (so it is a real attack, not a file
that fails to load), be flagged by `persistbench audit` with both stages (exit 1) and by
the static walk alone (`--static-only`: the walk reads what the loader reads), and neither
`audit` nor `advise` may let its payload act (canary absent, victim file intact).
"""

from __future__ import annotations

import pytest

from benchmarks.audit_corpus.attacks import ATTACK_CLASSES, ATTACKS, write_attacks
from benchmarks.audit_corpus.corpus import check_attack
from persistbench.audit import audit


def test_the_attacks_cover_every_class_and_are_many():
    assert len(ATTACKS) >= 30
    assert {a.technique for a in ATTACKS} == set(ATTACK_CLASSES)
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)


def test_the_static_walk_flags_every_attack(tmp_path):
    """In process and fast: the reader, framing, wrapper and state checks see each one."""
    missed = [a.name for a, path, _ in write_attacks(tmp_path / "a", tmp_path / "t")
              if audit(path).exit_status != 1]
    assert missed == []


@pytest.mark.slow
@pytest.mark.parametrize("name", [a.name for a in ATTACKS])
def test_an_attack_runs_under_its_loader_and_never_under_audit_or_advise(tmp_path, name):
    written = {a.name: (a, p, t) for a, p, t in write_attacks(tmp_path / "a", tmp_path / "t")}
    attack, path, target = written[name]
    row = check_attack(attack, path, target, tmp_path / "scratch")
    assert row["executed"], f"{name} does not run under its own loader: {row}"
    assert row["audit_exit"] == 1 and row["static_exit"] == 1, row
    assert row["advise_exit"] not in (0, None), row
    assert not (row["audit_took_effect"] or row["static_took_effect"]
                or row["advise_took_effect"]), row


def _findings(tmp_path, name: str) -> set[str]:
    written = {a.name: p for a, p, _ in write_attacks(tmp_path / "a", tmp_path / "t")}
    return {f.kind for f in audit(written[name]).findings}


@pytest.mark.parametrize("name, kind", [
    ("frame-around-wrapper", "import"),  # the frame-aware reader reaches os.system
    ("frame-around-object-array", "import"),
    ("wrapper-by-mareconstruct", "import"),  # the helper's first argument is the class
    ("wrapper-slot-state-shape", "unfollowable"),
    ("dtype-element-size-ignored", "unfollowable"),
    ("bunch-append-calls-stored", "mutation"),
    ("bunch-state-installs-setstate", "build"),
    ("subimport-build-replaces-reconstruct", "build"),
    ("skops-partial-declared-as-estimator", "shape"),
    ("skops-node-id-reused", "schema"),
    ("skops-method-node-tofile", "untrusted-type"),
])
def test_each_fix_answers_its_attack_at_the_root(tmp_path, name, kind):
    assert kind in _findings(tmp_path, name)


def test_the_reader_follows_frames_as_the_python_unpickler_does():
    """Opcodes from the frame, arguments not past its end, reads after it from the file."""
    import io

    from persistbench.audit.opcodes import Framed, Source, StreamError

    src = Source(io.BytesIO(b"abcdefXYZ"), True, 1 << 20)
    framed = Framed(src)
    framed.load_frame(4)  # the frame is b"abcd"
    assert framed.read(2) == b"ab" and src.offset == 4
    with pytest.raises(StreamError, match="exhausted before end of frame"):
        framed.read(3)
    framed = Framed(Source(io.BytesIO(b"ab\nXY\n"), True, 1 << 20))
    framed.load_frame(3)
    assert framed.line() == b"ab\n" and framed.line() == b"XY\n"  # then from the file


def test_a_last_line_without_newline_is_read_as_the_unpicklers_read_it(tmp_path):
    path = tmp_path / "eof.pkl"
    path.write_bytes(b"\x80\x02cos\nsystemX")  # the last byte stands for the newline
    report = audit(path)
    assert report.exit_status == 1 and "os.system" in report.imports


@pytest.mark.slow
def test_the_fuzzer_finds_nothing_the_walk_missed():
    """A run of the fuzzer against pickle.load and joblib's unpickler (about 40 s; longer
    runs: `python -m benchmarks.audit_corpus.fuzz --streams N --seed S`)."""
    from benchmarks.audit_corpus.fuzz import run

    result = run(2000, seed=7)
    assert result["resolving_a_name"]["joblib"] > 1000  # it reaches the loader's resolutions
    assert result["missed"] == []


@pytest.mark.slow
def test_the_fuzzer_can_fail(monkeypatch):
    """With frames ignored (the reader before it modelled them), it finds misses."""
    from benchmarks.audit_corpus.fuzz import run
    from persistbench.audit.opcodes import Framed

    monkeypatch.setattr(Framed, "load_frame", lambda self, size: None)
    assert run(600, seed=1)["missed"]


def test_a_module_name_with_a_space_is_read_whole(tmp_path):
    """GLOBAL's two lines stay two strings: `j blib.numpy_pickle` is not module `j`."""
    path = tmp_path / "space.pkl"
    path.write_bytes(b"\x80\x02cj blib.numpy_pickle\nNumpyArrayWrapper\n.")
    assert "j blib.numpy_pickle.NumpyArrayWrapper" in audit(path).imports
