"""Weighting variants of the ``weighted`` sampler (confusion-based and per-anchor similarity) and the
loss-side hardness weighting, checked on constructed vectors where the answer is known."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from mlret_rag.finetune import (
    LabelMaskedMNRLoss,
    NegativeSampler,
    anchor_similarity,
    centroid_similarity,
    confusion_similarity,
    finetune,
)


def _unit(rows) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# three labels on three axes; label 0's anchors lean towards label 1, never towards label 2
INDEX = _unit([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0.1, 1, 0], [0, 0, 1], [0, 0.1, 1]])
INDEX_LABELS = [0, 0, 1, 1, 2, 2]
ANCHORS = _unit([[1, 0.9, 0], [1, 0.8, 0.0], [0.2, 1, 0]])
ANCHOR_LABELS = [0, 0, 1]


def test_confusion_similarity_counts_what_the_base_model_confuses():
    sim = confusion_similarity(ANCHORS, ANCHOR_LABELS, INDEX, INDEX_LABELS, 3, k=3)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert sim[0, 1] == 1.0  # label 0's anchors retrieve label 1 records: its most confused label
    assert sim[0, 2] == 0.0  # ... and never label 2 within the top 3
    assert sim[2].tolist() == [0.0, 0.0, 1.0]  # no anchor of label 2: no confusion, uniform sampling
    with pytest.raises(ValueError, match="k must be"):
        confusion_similarity(ANCHORS, ANCHOR_LABELS, INDEX, INDEX_LABELS, 3, k=0)


def test_anchor_similarity_is_the_cosine_to_each_label_centroid():
    sim = anchor_similarity(ANCHORS, INDEX, INDEX_LABELS, 3)
    assert sim.shape == (3, 3)
    centroid_1 = _unit([INDEX[2] + INDEX[3]])[0]
    assert sim[0, 1] == pytest.approx(float(ANCHORS[0] @ centroid_1))
    assert sim[0, 1] > sim[0, 2]


def test_per_anchor_rows_steer_the_weighted_draws():
    labels = [lab for lab in range(4) for _ in range(50)]
    uniform_rows = np.zeros((4, 4))
    sampler = NegativeSampler(labels, 4, strategy="weighted", similarity=uniform_rows, temperature=0.05)
    rng = np.random.default_rng(0)
    towards_1, towards_3 = np.array([1.0, 0.9, 0.1, 0.1]), np.array([1.0, 0.1, 0.1, 0.9])
    first = Counter(labels[i] for _ in range(500) for i in sampler.sample(0, 3, rng, similarity_row=towards_1)[1:])
    second = Counter(labels[i] for _ in range(500) for i in sampler.sample(0, 3, rng, similarity_row=towards_3)[1:])
    assert first[0] == second[0] == 0  # never the anchor's own label
    assert first.most_common(1)[0][0] == 1 and first[1] > 0.95 * 1000
    assert second.most_common(1)[0][0] == 3 and second[3] > 0.95 * 1000
    plain = Counter(labels[i] for _ in range(500) for i in sampler.sample(0, 3, rng)[1:])
    assert min(plain[lab] for lab in (1, 2, 3)) > 250  # the label row (all equal) is uniform
    with pytest.raises(ValueError, match="one value per label"):
        sampler.sample(0, 3, rng, similarity_row=np.zeros(3))


def test_loss_side_hardness_matches_sentence_transformers_mnrl():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    cols = [torch.randn(6, 16) for _ in range(3)]
    labels = torch.tensor([[i, 100 + i] for i in range(6)])  # no shared label: nothing is masked
    for mode in ("in_batch_negatives", "hard_negatives", "all_negatives"):
        ours = LabelMaskedMNRLoss(None, scale=20.0, hardness_mode=mode, hardness_strength=5.0)
        theirs = MultipleNegativesRankingLoss(None, scale=20.0, hardness_mode=mode, hardness_strength=5.0)
        assert ours.compute_loss_from_embeddings(cols, labels).item() == pytest.approx(
            theirs.compute_loss_from_embeddings(cols, None).item(), rel=1e-5), mode
    plain = LabelMaskedMNRLoss(None, scale=20.0).compute_loss_from_embeddings(cols, labels)
    harder = LabelMaskedMNRLoss(None, scale=20.0, hardness_mode="all_negatives", hardness_strength=5.0)
    assert harder.get_config_dict()["hardness_mode"] == "all_negatives"
    assert harder.compute_loss_from_embeddings(cols, labels).item() != pytest.approx(plain.item())
    with pytest.raises(ValueError, match="hardness_mode"):
        LabelMaskedMNRLoss(None, hardness_mode="hardest")


def test_finetune_names_a_bad_similarity_or_hardness_option(tmp_path):
    kb = [{"id": f"r{i}", "text": f"text {i}", "label": f"l{i % 2}"} for i in range(4)]
    with pytest.raises(ValueError, match="similarity must be one of"):
        finetune(kb, out=tmp_path / "m", similarity="cosine")
    with pytest.raises(ValueError, match="hardness_mode"):
        finetune(kb, out=tmp_path / "m", hardness_mode="hardest")


def test_unlabelled_index_rows_belong_to_no_centroid():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    # the third row is unlabelled (-1): it must not pull label 1's centroid
    sim = centroid_similarity(vectors, [0, 1, -1], 2)
    np.testing.assert_allclose(sim, [[1.0, 0.0], [0.0, 1.0]], atol=1e-9)
    np.testing.assert_allclose(anchor_similarity(np.array([[0.0, 1.0]]), vectors, [0, 1, -1], 2), [[0.0, 1.0]])
