"""METHOD.md behaviour 1: the index/training split is seeded, disjoint, has the asked ratio, and drops+counts orphans."""

from __future__ import annotations

import pytest

from mlret_rag.finetune import split_kb
from mlret_rag.kb import KBRecord


def _kb(n_labels: int = 10, per_label: int = 10) -> list[KBRecord]:
    return [KBRecord(id=f"r{l}-{i}", text=f"text {l} {i}", label=f"L{l}") for l in range(n_labels)
            for i in range(per_label)]


def test_split_is_deterministic_disjoint_and_has_the_ratio():
    kb = _kb()
    a, b = split_kb(kb, train_ratio=0.3, seed=7), split_kb(kb, train_ratio=0.3, seed=7)
    assert [r.id for r in a.index] == [r.id for r in b.index] and [r.id for r in a.train] == [r.id for r in b.train]
    ids_index, ids_train = {r.id for r in a.index}, {r.id for r in a.train}
    assert not ids_index & ids_train
    assert ids_index | ids_train | {r.id for r in a.dropped} == {r.id for r in kb}
    assert len(a.train) + a.n_dropped == 30
    other = split_kb(kb, train_ratio=0.3, seed=8)
    assert {r.id for r in other.train} != ids_train
    assert len(split_kb(kb, train_ratio=0.5, seed=7).train) == 50


def test_training_rows_whose_label_has_no_index_member_are_dropped_and_counted():
    kb = _kb(n_labels=3, per_label=5) + [KBRecord(id="lonely", text="only one of its kind", label="solo")]
    drops = 0
    for seed in range(40):
        split = split_kb(kb, train_ratio=0.5, seed=seed)
        index_labels = {r.label for r in split.index}
        assert all(r.label in index_labels for r in split.train)
        assert all(r.label not in index_labels for r in split.dropped)
        if any(r.id == "lonely" for r in split.dropped):
            drops += 1
            assert split.n_dropped >= 1
        else:
            assert any(r.id == "lonely" for r in split.index)
    assert 5 < drops < 35  # the lone record lands in training (and is dropped) about half the time


def test_unlabelled_rows_stay_in_the_index():
    kb = _kb(n_labels=2, per_label=4) + [KBRecord(id=f"u{i}", text=f"free text {i}") for i in range(5)]
    split = split_kb(kb, train_ratio=0.5, seed=0)
    assert {f"u{i}" for i in range(5)} <= {r.id for r in split.index}
    assert len(split.train) + split.n_dropped == 4


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, "0.3", True])
def test_bad_ratio_is_refused(ratio):
    with pytest.raises(ValueError, match="train_ratio"):
        split_kb(_kb(), train_ratio=ratio)
