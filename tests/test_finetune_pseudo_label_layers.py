"""Pseudo-labelled questions train only the upper layers: their loss terms are the same, but no gradient
of theirs reaches the embedding block or the lowest layers, while labelled anchors and documents train all."""

from __future__ import annotations

import pytest
import torch
from support import columns_and_labels, largest_difference, loss_and_grads

from mlret_rag import MultilingualEncoder
from mlret_rag.demo import demo_questions_path, load_demo_kb
from mlret_rag.finetune import FinetuneConfig, LabelMaskedMNRLoss, finetune

CUT = 4


@pytest.fixture(scope="module")
def st():
    model = MultilingualEncoder(backend="torch").sentence_transformer
    model.eval()  # no dropout: the split forward must give the joint forward's numbers
    return model


def _below_cut(name: str) -> bool:
    return ".embeddings." in name or any(f".layer.{i}." in name for i in range(CUT))


def test_flagged_anchors_pass_no_gradient_below_the_cut(st):
    columns, labels = columns_and_labels(st)
    names = [name for name, _ in st.named_parameters()]
    flagged = lambda *flags: torch.cat([labels, torch.tensor(flags)[:, None]], dim=1)
    loss, grads = loss_and_grads(st, lambda: LabelMaskedMNRLoss(st).forward(columns(), labels))

    def documents_only():  # the same loss with the anchors' embeddings constant: only documents move
        features = columns()
        with torch.no_grad():
            anchors = st(features[0])["sentence_embedding"]
        documents = [st(f)["sentence_embedding"] for f in features[1:]]
        return LabelMaskedMNRLoss(st).compute_loss_from_embeddings([anchors, *documents], labels)

    _, document_grads = loss_and_grads(st, documents_only)
    cut = LabelMaskedMNRLoss(st, flagged_frozen_layers=CUT)
    none_loss, none_grads = loss_and_grads(st, lambda: cut.forward(columns(), flagged(0, 0)))
    all_loss, all_grads = loss_and_grads(st, lambda: cut.forward(columns(), flagged(1, 1)))
    one_loss, one_grads = loss_and_grads(st, lambda: cut.forward(columns(), flagged(0, 1)))

    scale = max(g.abs().max().item() for g in grads)
    assert scale > 1e-4
    assert none_loss == pytest.approx(loss, rel=1e-5) and largest_difference(none_grads, grads) < 1e-4 * scale
    for value in (all_loss, one_loss):
        assert value == pytest.approx(loss, rel=1e-5)  # the same terms, only their gradients routed
    low = [i for i, name in enumerate(names) if _below_cut(name)]
    high = [i for i, name in enumerate(names) if not _below_cut(name)]
    pick = lambda gs, idx: [gs[i] for i in idx]
    # above the cut every term trains; below it, flagged anchors add nothing to what the documents give
    for flagged_grads in (all_grads, one_grads):
        assert largest_difference(pick(flagged_grads, high), pick(grads, high)) < 1e-4 * scale
    assert largest_difference(pick(all_grads, low), pick(document_grads, low)) < 1e-4 * scale
    assert largest_difference(pick(grads, low), pick(document_grads, low)) > 1e-2 * scale  # anchors do move them
    between = largest_difference(pick(one_grads, low), pick(grads, low))
    assert 1e-4 * scale < between  # the unflagged anchor still trains below the cut, the flagged one not
    assert largest_difference(pick(one_grads, low), pick(document_grads, low)) > 1e-4 * scale


def test_a_cut_the_model_cannot_honour_is_refused(st, tmp_path):
    with pytest.raises(ValueError, match="pseudo_labels_frozen_layers must be an integer >= 0, got -1"):
        FinetuneConfig(pseudo_labels_frozen_layers=-1)
    with pytest.raises(ValueError, match="flagged_frozen_layers must be an integer >= 0"):
        LabelMaskedMNRLoss(st, flagged_frozen_layers=-2)
    with pytest.raises(ValueError, match="pseudo_labels_frozen_layers=12 leaves pseudo-labelled questions nothing "
                                         "to train: the model has 12 layers"):
        finetune(load_demo_kb(), out=tmp_path / "m", dev_queries=demo_questions_path(), unlabelled=[{"text": "licht an"}],
                 pseudo_labels_frozen_layers=12, show_progress_bar=False)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())  # refused before writing
