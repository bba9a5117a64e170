"""METHOD.md behaviours 2 and 3: positives share the anchor's label and are never its source; negatives never do."""

from __future__ import annotations

import numpy as np
import pytest

from mlret_rag.finetune import (
    Anchor,
    NegativeSampler,
    build_examples,
    centroid_similarity,
    mine_hard_negatives,
)
from mlret_rag.kb import KBRecord

N_LABELS, PER_LABEL = 6, 3


def _index() -> tuple[list[KBRecord], list[int]]:
    index = [KBRecord(id=f"r{l}-{i}", text=f"label {l} row {i}", label=f"L{l}")
             for l in range(N_LABELS) for i in range(PER_LABEL)]
    return index, [l for l in range(N_LABELS) for _ in range(PER_LABEL)]


def _anchors(index: list[KBRecord]) -> list[Anchor]:
    # every index row is also rendered as an anchor made from it (its source), in two languages
    return [Anchor(f"{lang}: {r.text}", int(r.id[1]), lang, source_id=r.id) for r in index for lang in ("xx", "yy")]


def _sampler(strategy: str, labels: list[int]) -> NegativeSampler:
    rng = np.random.default_rng(0)
    sim = centroid_similarity(rng.normal(size=(len(labels), 8)), labels, N_LABELS)
    return NegativeSampler(labels, N_LABELS, strategy=strategy, similarity=sim, temperature=0.1)


def _ranked(anchors: list[Anchor], labels: list[int]) -> list[list[int]]:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(len(anchors), 8))
    d = rng.normal(size=(len(labels), 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return mine_hard_negatives(a, d, [x.label_id for x in anchors], labels, 5)


@pytest.mark.parametrize("strategy", ["standard", "weighted", "hard"])
def test_positive_has_the_label_and_is_not_the_source_and_no_negative_has_the_label(strategy):
    index, labels = _index()
    anchors = _anchors(index)
    ranked = _ranked(anchors, labels) if strategy == "hard" else None
    for seed in range(5):
        examples, dropped = build_examples(anchors, index, labels, _sampler(strategy, labels),
                                           negatives_per_anchor=3, seed=seed, ranked=ranked)
        assert dropped == 0 and len(examples) == len(anchors)
        by_id = {r.id: r for r in index}
        for anchor, ex in zip(anchors, examples):
            assert by_id[ex.positive_id].label == f"L{anchor.label_id}"
            assert ex.positive_id != anchor.source_id
            assert len(ex.negative_ids) == 3
            assert all(by_id[n].label != f"L{anchor.label_id}" for n in ex.negative_ids)
            assert all(lab != anchor.label_id for lab in ex.negative_label_ids)


def test_positives_cover_every_other_same_label_record():
    index, labels = _index()
    anchor = Anchor("q", 2, None, source_id="r2-0")
    seen = set()
    for seed in range(60):
        (ex,), _ = build_examples([anchor], index, labels, _sampler("standard", labels), seed=seed)
        seen.add(ex.positive_id)
    assert seen == {"r2-1", "r2-2"}


def test_an_anchor_whose_only_same_label_record_is_its_source_is_dropped_and_counted():
    index, labels = _index()
    index.append(KBRecord(id="solo", text="only one", label="L6"))
    labels.append(6)
    sampler = NegativeSampler(labels, N_LABELS + 1, strategy="standard")
    examples, dropped = build_examples([Anchor("q", 6, None, "solo"), Anchor("q2", 0, None, "r0-0")],
                                       index, labels, sampler)
    assert dropped == 1 and [e.anchor for e in examples] == ["q2"]


def test_hard_mining_ranks_other_label_records_by_similarity():
    index_vecs = np.array([[1, 0], [0.9, 0.436], [0.6, 0.8], [0, 1]], dtype=float)
    labels = [0, 1, 2, 2]
    ranked = mine_hard_negatives(np.array([[1.0, 0.0]]), index_vecs, [0], labels, 3)
    assert ranked == [[1, 2, 3]]  # record 0 has the anchor's label and is never offered
