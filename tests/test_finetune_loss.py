"""METHOD.md behaviour 5 (loss side): a same-label in-batch candidate is masked out of the InfoNCE denominator."""

from __future__ import annotations

import math

import pytest
import torch
from support import columns_and_labels, largest_difference, loss_and_grads

from mlret_rag.finetune import LabelMaskedMNRLoss, masked_infonce_loss

E = torch.eye(4)  # orthonormal basis vectors make cosine similarities exact 0 / 1


def _manual(scores_row: list[float], positive: int, keep: list[int], scale: float) -> float:
    logits = [scale * scores_row[j] for j in keep]
    return -(scale * scores_row[positive] - math.log(sum(math.exp(x) for x in logits)))


def test_same_label_in_batch_candidate_is_masked_out_of_the_denominator():
    # anchors 0 and 1 share label 7; anchor 1's positive equals anchor 0's direction (a would-be false negative)
    anchors = torch.stack([E[0], E[1]])
    positives = torch.stack([E[0], E[0]])
    negatives = torch.stack([E[2], E[3]])
    labels = torch.tensor([[7, 8], [7, 9]])
    got = masked_infonce_loss(anchors, [positives, negatives], labels, scale=1.0)
    # candidates, column-major: pos0, pos1, neg0, neg1.  For anchor 0, pos1 (label 7) is masked.
    loss0 = _manual([1, 1, 0, 0], 0, keep=[0, 2, 3], scale=1.0)
    loss1 = _manual([0, 0, 0, 0], 1, keep=[1, 2, 3], scale=1.0)
    assert got.item() == pytest.approx((loss0 + loss1) / 2, abs=1e-6)
    unmasked = masked_infonce_loss(anchors, [positives, negatives], torch.tensor([[7, 8], [6, 9]]), scale=1.0)
    assert unmasked.item() > got.item()  # without the shared label, anchor 0 is pushed away from its duplicate


def test_an_explicit_negative_of_another_anchor_with_my_label_is_masked():
    anchors = torch.stack([E[0], E[1]])
    positives = torch.stack([E[0], E[1]])
    negatives = torch.stack([E[2], E[0]])
    # anchor 0 (label 5) has a negative of label 6 = anchor 1's label; anchor 1's negative has label 5
    masked = masked_infonce_loss(anchors, [positives, negatives], torch.tensor([[5, 6], [6, 5]]), scale=10.0)
    expected0 = _manual([1, 0, 0, 1], 0, keep=[0, 1, 2], scale=10.0)  # candidate 3 (label 5) masked
    expected1 = _manual([0, 1, 0, 0], 1, keep=[0, 1, 3], scale=10.0)  # candidate 2 (label 6) masked
    assert masked.item() == pytest.approx((expected0 + expected1) / 2, abs=1e-6)
    assert masked.item() < masked_infonce_loss(anchors, [positives, negatives], torch.tensor([[5, 6], [6, 7]]), scale=10.0).item()


def test_without_shared_labels_it_equals_sentence_transformers_mnrl():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    cols = [torch.randn(6, 16) for _ in range(3)]
    labels = torch.tensor([[i, 100 + i] for i in range(6)])
    ours = LabelMaskedMNRLoss(model=None, scale=20.0).compute_loss_from_embeddings(cols, labels)
    mnrl = MultipleNegativesRankingLoss(model=None, scale=20.0)  # the model is not needed for embeddings
    theirs = mnrl.compute_loss_from_embeddings(cols, None)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_config_and_bad_label_shape():
    loss = LabelMaskedMNRLoss(model=None, scale=20.0)
    assert loss.get_config_dict()["scale"] == 20.0
    with pytest.raises(ValueError, match="labels must have shape"):
        loss.compute_loss_from_embeddings([torch.randn(2, 4)] * 3, torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="scale"):
        LabelMaskedMNRLoss(model=None, scale=0)



@pytest.mark.parametrize("mode", ["constant", "cached"])
def test_constant_and_cached_documents_train_only_through_the_anchors(encoder, mode):
    """Same loss value; the gradients are those of the loss with the document embeddings held constant."""
    from mlret_rag.finetune.packing import embed_columns_packed

    st = encoder.sentence_transformer
    st.eval()  # no dropout: every pass below sees the same embeddings
    columns, labels = columns_and_labels(st)

    def held_constant() -> torch.Tensor:
        embedded = embed_columns_packed(st, columns())
        return masked_infonce_loss(embedded[0], [e.detach() for e in embedded[1:]], labels, scale=20.0)

    full, full_grads = loss_and_grads(st, lambda: LabelMaskedMNRLoss(st).forward(columns(), labels))
    got, grads = loss_and_grads(st, lambda: LabelMaskedMNRLoss(st, document_embeddings=mode).forward(columns(), labels))
    expected, expected_grads = loss_and_grads(st, held_constant)
    assert got == pytest.approx(full, rel=1e-5) and got == pytest.approx(expected, rel=1e-5)
    scale = max(g.abs().max().item() for g in expected_grads)
    assert scale > 1e-4
    assert largest_difference(grads, expected_grads) < 1e-4 * scale
    assert largest_difference(grads, full_grads) > 1e-2 * scale  # the documents' own gradients are gone
    assert LabelMaskedMNRLoss(st, document_embeddings=mode).get_config_dict()["document_embeddings"] == mode


def test_cached_documents_are_embedded_once_per_loss(encoder):
    st = encoder.sentence_transformer
    st.eval()
    columns, labels = columns_and_labels(st)
    rows: list[int] = []
    handle = st[0].register_forward_hook(lambda module, args, output: rows.append(args[0]["input_ids"].shape[0]))
    try:
        loss = LabelMaskedMNRLoss(st, document_embeddings="cached")
        first = loss.forward(columns(), labels).item()
        assert sum(rows) == 2 + 3  # two anchors, three distinct documents (one text is in both columns)
        rows.clear()
        assert loss.forward(columns(), labels).item() == pytest.approx(first, rel=1e-6)
        assert rows == [2]  # only the anchors again
        rows.clear()
        LabelMaskedMNRLoss(st, document_embeddings="cached").forward(columns(), labels)
        assert sum(rows) == 5  # a new loss (the next epoch) embeds with the current weights again
    finally:
        handle.remove()
        st.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="document_embeddings must be one of"):
        LabelMaskedMNRLoss(st, document_embeddings="frozen")
