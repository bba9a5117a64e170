"""Training examples per epoch: negatives redrawn every epoch so more epochs see more distinct negatives.

``weighted`` and ``standard`` draws use the seed ``[seed, epoch]`` (epoch 0: ``seed``), so a run is
reproducible and epoch 2 differs from epoch 1; ``hard`` negatives are re-mined with the model as it is
at the start of each epoch (false-negative filtered on passage KBs, :func:`.negatives.mine_hard_negatives`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import KnowledgeBaseError
from .data import TrainingData
from .examples import Anchor, Example, build_examples
from .label_similarity import anchor_similarity, confusion_similarity, label_similarity
from .negatives import NegativeSampler, mine_hard_negatives


def descriptions_cover(descriptions: dict[str, str] | None, labels: list[str]) -> bool:
    """True when ``descriptions`` has a text for every label."""
    return bool(descriptions) and all(label in descriptions for label in labels)  # type: ignore[operator]


ANCHOR_SIMILARITY_WITH_UNLABELLED = ("similarity='anchor' weighs negatives per labelled anchor; "
                                     "it does not combine with unlabelled questions")


class EpochExamples:
    """Each epoch's training examples, drawn anew: similarities once under the base model, hard negatives
    re-mined with the current model every epoch, and every draw seeded with ``[seed, epoch]``."""

    def __init__(self, data: TrainingData, strategy: str, k: int, temperature: float, seed: int,
                 descriptions: dict[str, str] | None, source: str, false_negative_share: float) -> None:
        self.data, self.strategy, self.k, self.temperature, self.seed = data, strategy, k, temperature, seed
        self.descriptions, self.source, self.false_negative_share = descriptions, source, false_negative_share
        self._sampler: NegativeSampler | None = None
        self._per_anchor: np.ndarray | None = None

    def examples(self, encoder, epoch: int, extra: Sequence[Anchor] = (),
                 sitting_out: frozenset[str] = frozenset()) -> list[Example]:
        """Examples for ``epoch`` (0-based), drawn with the seed ``[seed, epoch]`` (epoch 0: ``seed``);
        ``extra`` anchors (pseudo-labelled questions, :mod:`.pseudo_labels`) join this epoch only, and the
        anchors in the ``sitting_out`` languages (calibration languages, :mod:`.pseudo_labels`) skip it."""
        data, ranked = self.data, None
        anchors = [*(a for a in data.anchors if a.lang not in sitting_out), *extra]
        if self._sampler is None:
            similarity = self._similarity(encoder) if self.strategy == "weighted" else None
            self._sampler = NegativeSampler(data.index_label_ids, len(data.labels), strategy=self.strategy,
                                            similarity=similarity, temperature=self.temperature)
        if extra and self._per_anchor is not None:
            raise ValueError(ANCHOR_SIMILARITY_WITH_UNLABELLED)
        if self.strategy == "hard":
            anchor_vecs = encoder.encode_queries([a.text for a in anchors])
            index_vecs = encoder.encode_documents([r.text for r in data.index])
            # a few spare candidates so the anchor's own source record can never crowd out a real negative
            ranked = mine_hard_negatives(anchor_vecs, index_vecs, [a.label_id for a in anchors],
                                         data.index_label_ids, self.k + 2,
                                         relevant=[a.relevant for a in anchors] if data.passages else None,
                                         false_negative_share=self.false_negative_share)
        examples, _ = build_examples(anchors, data.index, data.index_label_ids, self._sampler,
                                     negatives_per_anchor=self.k, seed=self.seed if epoch == 0 else [self.seed, epoch],
                                     ranked=ranked, anchor_similarity=self._per_anchor)
        if not examples:
            raise KnowledgeBaseError(
                "no training example: no anchor has a same-label index record other than its source")
        return examples

    def _similarity(self, encoder) -> np.ndarray:
        data = self.data
        if self.source in ("confusion", "anchor"):
            anchor_vecs = encoder.encode_queries([a.text for a in data.anchors])
            index_vecs = encoder.encode_documents([r.text for r in data.index])
            n = len(data.labels)
            if self.source == "anchor":
                self._per_anchor = anchor_similarity(anchor_vecs, index_vecs, data.index_label_ids, n)
            return confusion_similarity(anchor_vecs, [a.label_id for a in data.anchors], index_vecs,
                                        data.index_label_ids, n)
        labelled = [i for i, lab in enumerate(data.index_label_ids) if lab >= 0]
        desc = ({i: self.descriptions[label] for i, label in enumerate(data.labels)}  # type: ignore[index]
                if not data.passages and descriptions_cover(self.descriptions, data.labels) else None)
        return label_similarity(encoder, [data.index[i].text for i in labelled],
                                [data.index_label_ids[i] for i in labelled], len(data.labels), descriptions=desc)
