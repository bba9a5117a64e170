"""InfoNCE with explicit and in-batch negatives, where same-label in-batch candidates are masked out.

This is sentence-transformers' MultipleNegativesRankingLoss (query -> documents, one joint softmax)
plus a label mask: for anchor ``i`` every candidate in the batch (other anchors' positives and
negatives) that carries anchor ``i``'s label is removed from the softmax denominator, except anchor
``i``'s own positive. Same-label candidates are not negatives, so batches need not be label-unique
(which cannot work when a knowledge base has fewer labels than the batch size).

The trainer passes labels as a (batch, 1 + n_negatives) integer tensor: column 0 is the anchor's (and
its positive's) label id, column ``j`` the label id of negative ``j``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def masked_infonce_loss(
    anchors: Tensor, candidates: list[Tensor], labels: Tensor, *, scale: float = 20.0,
) -> Tensor:
    """Mean InfoNCE loss of ``anchors`` against all candidate columns, masking same-label false negatives.

    Args:
        anchors: (B, d) anchor embeddings.
        candidates: ``[positives (B, d), negatives_1 (B, d), ...]``.
        labels: (B, 1 + n_negatives) label ids (column 0: anchor/positive, column j: negative j).
        scale: inverse temperature applied to cosine similarities.
    """
    if labels.dim() == 1:
        labels = labels[:, None]
    if labels.shape != (anchors.shape[0], len(candidates)):
        raise ValueError(
            f"labels must have shape (batch, {len(candidates)}) (anchor label, then one per negative); "
            f"got {tuple(labels.shape)}"
        )
    batch = anchors.shape[0]
    docs = torch.cat(candidates, dim=0)  # column-major: positives, then negatives_1, ...
    doc_labels = labels.T.reshape(-1).to(anchors.device)
    scores = nn.functional.normalize(anchors, dim=-1) @ nn.functional.normalize(docs, dim=-1).T * scale
    rows = torch.arange(batch, device=anchors.device)
    false_negative = doc_labels[None, :] == labels[:, 0].to(anchors.device)[:, None]
    false_negative[rows, rows] = False  # the anchor's own positive stays
    scores = scores.masked_fill(false_negative, float("-inf"))
    return nn.functional.cross_entropy(scores, rows)


class LabelMaskedMNRLoss(nn.Module):
    """MultipleNegativesRankingLoss-style InfoNCE whose denominator excludes same-label in-batch candidates.

    Args:
        model: the SentenceTransformer being trained.
        scale: inverse temperature of the softmax over cosine similarities (20 = temperature 0.05).
    """

    def __init__(self, model, scale: float = 20.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.model = model
        self.scale = float(scale)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        """Embed every column (anchor first) and compute :func:`masked_infonce_loss`."""
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The loss from already computed column embeddings ``[anchors, positives, negatives_1, ...]``."""
        if len(embeddings) < 2:
            raise ValueError(f"expected at least anchor and positive columns, got {len(embeddings)}")
        return masked_infonce_loss(embeddings[0], list(embeddings[1:]), labels, scale=self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        """Configuration recorded in the model card."""
        return {"scale": self.scale, "similarity_fct": "cos_sim", "mask": "same-label in-batch candidates"}
