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
