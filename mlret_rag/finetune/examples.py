"""Training examples (anchor, positive, negatives) from anchors and the index part of a knowledge base.

The positive is a random index record with the anchor's label (or, for a passage anchor, one of its
listed relevant passages), never the record the anchor was made from (its ``source_id``); an anchor
without such a record is dropped and counted. Negatives come from a :class:`~.negatives.NegativeSampler`
and never include a passage the anchor lists as relevant. Each epoch draws anew with its own seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..kb import KBRecord
from .negatives import NegativeSampler


@dataclass(frozen=True)
class Anchor:
    """A training question: text in any language, its label id, language and the KB record it came from.

    ``relevant`` (passage KBs) holds the index positions of the passages that answer it; the positive is
    drawn from them and none of them is ever a negative.
    """

    text: str
    label_id: int
    lang: str | None = None
    source_id: str | None = None
    relevant: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Example:
    """One training tuple, with the label id of the anchor (= positive) and of each negative."""

    anchor: str
    positive: str
    negatives: tuple[str, ...]
    label_id: int
    negative_label_ids: tuple[int, ...]
    lang: str | None
    positive_id: str
    negative_ids: tuple[str, ...]


def build_examples(
    anchors: Sequence[Anchor], index: Sequence[KBRecord], index_label_ids: Sequence[int],
    sampler: NegativeSampler, *, negatives_per_anchor: int = 3, seed: int | Sequence[int] = 0,
    ranked: Sequence[Sequence[int]] | None = None, anchor_similarity: np.ndarray | None = None,
) -> tuple[list[Example], int]:
    """Build one example per usable anchor; returns (examples, anchors dropped for want of a positive).

    ``ranked`` (one list of index positions per anchor) is needed by the ``hard`` strategy;
    ``anchor_similarity`` ((n_anchors, n_labels)) makes ``weighted`` sampling per anchor; ``seed`` may be
    a sequence (e.g. ``[seed, epoch]``) so that every epoch draws different, reproducible examples.
    """
    if negatives_per_anchor < 0:
        raise ValueError(f"negatives_per_anchor must be >= 0, got {negatives_per_anchor!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(index_label_ids)
    examples: list[Example] = []
    no_positive = 0
    for n, anchor in enumerate(anchors):
        candidates = sampler.by_label[anchor.label_id] if anchor.relevant is None else anchor.relevant
        same = [int(i) for i in candidates if index[i].id != anchor.source_id]
        if not same:
            no_positive += 1
            continue
        pos = same[int(rng.integers(len(same)))]
        label = int(labels[pos])
        negs = sampler.sample(
            label, negatives_per_anchor, rng, ranked=None if ranked is None else ranked[n],
            similarity_row=None if anchor_similarity is None else anchor_similarity[n],
            exclude=anchor.relevant or (),
        ) if negatives_per_anchor else []
        examples.append(Example(
            anchor=anchor.text, positive=index[pos].text, negatives=tuple(index[i].text for i in negs),
            label_id=label, negative_label_ids=tuple(int(labels[i]) for i in negs),
            lang=anchor.lang, positive_id=index[pos].id, negative_ids=tuple(index[i].id for i in negs),
        ))
    return examples, no_positive
