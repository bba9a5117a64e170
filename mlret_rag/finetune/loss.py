"""InfoNCE with explicit and in-batch negatives, where same-label in-batch candidates are masked out.

This is sentence-transformers' MultipleNegativesRankingLoss (query -> documents, one joint softmax)
plus a label mask: for anchor ``i`` every candidate in the batch (other anchors' positives and
negatives) that carries anchor ``i``'s label is removed from the softmax denominator, except anchor
``i``'s own positive. Same-label candidates are not negatives, so batches need not be label-unique
(which cannot work when a knowledge base has fewer labels than the batch size).

Optional loss-side hardness weighting, as sentence-transformers 6's ``MultipleNegativesRankingLoss``
(``hardness_mode``, ``hardness_strength``): ``strength * stop_grad(cos)`` is added to the logits of the
chosen negatives (``"in_batch_negatives"``: other anchors' candidates; ``"hard_negatives"``: the anchor's
own explicit negatives; ``"all_negatives"``: both), so harder negatives weigh more in the denominator.

The trainer passes labels as a (batch, 1 + n_negatives) integer tensor: column 0 is the anchor's (and
its positive's) label id, column ``j`` the label id of negative ``j``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from .config import DOCUMENT_EMBEDDINGS, HARDNESS_MODES  # validated with the other options in FinetuneConfig


def masked_infonce_loss(
    anchors: Tensor, candidates: list[Tensor], labels: Tensor, *, scale: float = 20.0,
    hardness_mode: str | None = None, hardness_strength: float = 0.0,
) -> Tensor:
    """Mean InfoNCE loss of ``anchors`` against all candidate columns, masking same-label false negatives.

    Args:
        anchors: (B, d) anchor embeddings.
        candidates: ``[positives (B, d), negatives_1 (B, d), ...]``.
        labels: (B, 1 + n_negatives) label ids (column 0: anchor/positive, column j: negative j).
        scale: inverse temperature applied to cosine similarities.
        hardness_mode, hardness_strength: loss-side hardness weighting (see the module docstring).
    """
    if hardness_mode not in HARDNESS_MODES:
        raise ValueError(f"hardness_mode must be one of {HARDNESS_MODES}, got {hardness_mode!r}")
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
    cosine = nn.functional.normalize(anchors, dim=-1) @ nn.functional.normalize(docs, dim=-1).T
    scores = cosine * scale
    rows = torch.arange(batch, device=anchors.device)
    if hardness_mode is not None and hardness_strength > 0:
        own = torch.eye(batch, dtype=torch.bool, device=anchors.device).repeat(1, len(candidates))
        penalised = {"in_batch_negatives": ~own, "hard_negatives": own,
                     "all_negatives": torch.ones_like(own)}[hardness_mode].clone()
        penalised[rows, rows] = False  # never the anchor's own positive
        scores = scores + hardness_strength * cosine.detach() * penalised
    false_negative = doc_labels[None, :] == labels[:, 0].to(anchors.device)[:, None]
    false_negative[rows, rows] = False  # the anchor's own positive stays
    scores = scores.masked_fill(false_negative, float("-inf"))
    return nn.functional.cross_entropy(scores, rows)


class LabelMaskedMNRLoss(nn.Module):
    """MultipleNegativesRankingLoss-style InfoNCE whose denominator excludes same-label in-batch candidates.

    Args:
        model: the SentenceTransformer being trained.
        document_embeddings: how positives and negatives are embedded: ``"trained"`` (with gradients,
            as sentence-transformers does), ``"constant"`` (embedded without autograd at every step, so
            only the anchors pull) or ``"cached"`` (without autograd, and each distinct text only once in
            this loss's life; the trainer builds one loss per epoch, so the cache is at most an epoch old).
        scale: inverse temperature of the softmax over cosine similarities (20 = temperature 0.05).
        hardness_mode, hardness_strength: loss-side hardness weighting (module docstring); off by default.
        encode: what runs a column's forward instead of ``model`` (e.g. a
            :class:`~mlret_rag.finetune.frozen_prefix.FrozenPrefixCache` of it); default ``model``.
        flagged_frozen_layers: the labels carry one more column, 1 for a row whose anchor trains only the
            layers above this many (its gradient stops below them): the pseudo-labelled questions.
    """

    def __init__(self, model, scale: float = 20.0, hardness_mode: str | None = None,
                 hardness_strength: float = 0.0, document_embeddings: str = "trained",
                 encode: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 flagged_frozen_layers: int = 0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        if hardness_mode not in HARDNESS_MODES:
            raise ValueError(f"hardness_mode must be one of {HARDNESS_MODES}, got {hardness_mode!r}")
        if not hardness_strength >= 0:
            raise ValueError(f"hardness_strength must be >= 0, got {hardness_strength!r}")
        self.model = model
        self.encode = encode  # None: the model itself
        self.scale = float(scale)
        self.hardness_mode = hardness_mode
        self.hardness_strength = float(hardness_strength)
        if document_embeddings not in DOCUMENT_EMBEDDINGS:
            raise ValueError(f"document_embeddings must be one of {', '.join(DOCUMENT_EMBEDDINGS)}; "
                             f"got {document_embeddings!r}")
        self.document_embeddings = document_embeddings
        self._cache: dict[bytes, Tensor] = {}
        if (isinstance(flagged_frozen_layers, bool) or not isinstance(flagged_frozen_layers, int)
                or flagged_frozen_layers < 0):
            raise ValueError(f"flagged_frozen_layers must be an integer >= 0, got {flagged_frozen_layers!r}")
        self.flagged_frozen_layers = flagged_frozen_layers

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        """Embed every column (anchor first; :mod:`.packing`) and compute :func:`masked_infonce_loss`.

        The document columns are embedded as ``document_embeddings`` says (the class docstring); without
        autograd a document costs about a third of its forward and backward and keeps no activations.
        """
        features = list(sentence_features)
        flagged = None
        if self.flagged_frozen_layers:
            labels, flagged = labels[:, :-1], labels[:, -1].bool()
        if flagged is not None and bool(flagged.any()):
            embeddings = [self._anchors_split(features[0], flagged)]
            if self.document_embeddings == "trained":
                embeddings += self._embed(features[1:])
        elif self.document_embeddings == "trained":
            embeddings = self._embed(features)
        else:
            embeddings = self._embed(features[:1])
        if self.document_embeddings != "trained":
            with torch.no_grad():
                embeddings += (self._cached(features[1:]) if self.document_embeddings == "cached"
                               else self._embed(features[1:]))
        return self.compute_loss_from_embeddings(embeddings, labels)

    def _anchors_split(self, anchors: dict[str, Tensor], flagged: Tensor) -> Tensor:
        """The anchor column's embeddings, the flagged rows' gradient stopping below ``flagged_frozen_layers``."""
        from .frozen_prefix import gradient_stopped_below
        from .packing import select_rows

        rows = torch.arange(len(flagged))
        plain, cut = rows[~flagged].tolist(), rows[flagged].tolist()
        with gradient_stopped_below(self.model, self.flagged_frozen_layers):
            parts = self._embed([select_rows(anchors, cut)])
        if plain:
            parts = self._embed([select_rows(anchors, plain)]) + parts
        order = torch.tensor(plain + cut).argsort()
        return torch.cat(parts)[order.to(parts[0].device)]

    def _embed(self, columns: list[dict[str, Tensor]]) -> list[Tensor]:
        from .packing import embed_columns_packed

        return embed_columns_packed(self.model if self.encode is None else self.encode, columns)

    def _cached(self, columns: list[dict[str, Tensor]]) -> list[Tensor]:
        """Each column's document embeddings, a text embedded once (at its first use) for this loss's life."""
        from .packing import row_keys, select_rows

        keyed = [row_keys(features) for features in columns]
        for features, keys in zip(columns, keyed):
            missing = {key: row for row, key in enumerate(keys) if key not in self._cache}
            if missing:
                new = self._embed([select_rows(features, list(missing.values()))])[0]
                self._cache.update(zip(missing, new.unbind(0)))
        return [torch.stack([self._cache[key] for key in keys]) for keys in keyed]

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The loss from already computed column embeddings ``[anchors, positives, negatives_1, ...]``."""
        if len(embeddings) < 2:
            raise ValueError(f"expected at least anchor and positive columns, got {len(embeddings)}")
        return masked_infonce_loss(embeddings[0], list(embeddings[1:]), labels, scale=self.scale,
                                   hardness_mode=self.hardness_mode, hardness_strength=self.hardness_strength)

    def get_config_dict(self) -> dict[str, Any]:
        """Configuration recorded in the model card."""
        return {"scale": self.scale, "similarity_fct": "cos_sim", "mask": "same-label in-batch candidates",
                "hardness_mode": self.hardness_mode, "hardness_strength": self.hardness_strength,
                "document_embeddings": self.document_embeddings,
                "flagged_frozen_layers": self.flagged_frozen_layers}
