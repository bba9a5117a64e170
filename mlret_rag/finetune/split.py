"""Seeded split of a labelled knowledge base into an index part (searched) and a training part (anchors)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..kb import KBRecord


@dataclass(frozen=True)
class KBSplit:
    """The index part, the training part, and the training rows dropped because no index row shares their label."""

    index: list[KBRecord]
    train: list[KBRecord]
    dropped: list[KBRecord]

    @property
    def n_dropped(self) -> int:
        """How many training rows were dropped (their label has no index member)."""
        return len(self.dropped)


def split_kb(kb: Sequence[KBRecord], *, train_ratio: float = 0.3, seed: int = 0) -> KBSplit:
    """Split ``kb`` into index/training parts with a seeded permutation; deterministic for a given seed.

    ``round(train_ratio * n_labelled)`` labelled rows go to training; unlabelled rows always stay in the
    index (they cannot be anchors). Training rows whose label then has no index member are dropped and
    returned in :attr:`KBSplit.dropped` so callers can report them.

    Raises:
        ValueError: ``train_ratio`` outside (0, 1).
    """
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, (int, float)) or not 0 < train_ratio < 1:
        raise ValueError(f"train_ratio must be a number strictly between 0 and 1, got {train_ratio!r}")
    labelled = [i for i, r in enumerate(kb) if r.label is not None]
    order = np.random.default_rng(seed).permutation(len(labelled))
    n_train = round(train_ratio * len(labelled))
    train_pos = {labelled[j] for j in order[:n_train]}
    index = [r for i, r in enumerate(kb) if i not in train_pos]
    index_labels = {r.label for r in index}
    train, dropped = [], []
    for i in sorted(train_pos):
        (train if kb[i].label in index_labels else dropped).append(kb[i])
    return KBSplit(index=index, train=train, dropped=dropped)
