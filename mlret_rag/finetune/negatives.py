"""Negative sampling: ``standard`` (uniform), ``weighted`` (label-similarity softmax) and ``hard`` (mined).

No strategy ever returns an index record with the anchor's label, so no negative is a false negative.

* ``standard``: uniform over index records whose label differs from the anchor's.
* ``weighted``: the first negative as in ``standard``; each further one picks a label ``l`` with
  probability ``softmax(sim(anchor_label, l) / temperature)`` over the other labels, then a record of
  ``l`` uniformly. ``temperature -> inf`` is uniform over labels, ``temperature -> 0`` the hardest label
  only (``0`` itself is accepted and means exactly that). The similarity is per label (one row per
  anchor label, :mod:`.label_similarity`) or per anchor (``similarity_row`` given to
  :meth:`NegativeSampler.sample`, e.g. the anchor's cosine to every label centroid).
* ``hard``: the other-label index records most similar to the anchor under the current model
  (:func:`mine_hard_negatives`), with false-negative filtering for passage KBs: candidates scoring above
  ``false_negative_share`` of the anchor's best relevant passage are dropped (seed paper B).

``exclude`` (a passage anchor's relevant passages) is never returned by any strategy.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

STRATEGIES = ("standard", "weighted", "hard")


def label_probabilities(
    similarity_row: np.ndarray, anchor_label: int, available: np.ndarray, temperature: float
) -> np.ndarray:
    """Probability of drawing each label as a negative for ``anchor_label`` (0 for it and unavailable labels)."""
    if temperature < 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0 (or inf), got {temperature!r}")
    allowed = np.asarray(available, dtype=bool).copy()
    allowed[anchor_label] = False
    if not allowed.any():
        raise ValueError("no other label has an index record, so no negative can be drawn")
    sim = np.asarray(similarity_row, dtype=np.float64)
    probs = np.zeros(len(allowed))
    if math.isinf(temperature):
        probs[allowed] = 1.0
    elif temperature == 0:
        best = sim[allowed].max()
        probs[allowed & (sim >= best - 1e-12)] = 1.0
    else:
        logits = np.where(allowed, sim / temperature, -np.inf)
        probs = np.exp(logits - logits[allowed].max())
    return probs / probs.sum()


class NegativeSampler:
    """Draws index positions of negatives for an anchor label with one of :data:`STRATEGIES`.

    Args:
        index_label_ids: label id of each index record (``-1`` for unlabelled records, never drawn).
        n_labels: number of label ids.
        strategy: ``"standard"``, ``"weighted"`` or ``"hard"``.
        similarity: (n_labels, n_labels) label similarity, required for ``"weighted"``.
        temperature: softmax temperature for ``"weighted"``.
    """

    def __init__(
        self, index_label_ids: Sequence[int], n_labels: int, *, strategy: str = "weighted",
        similarity: np.ndarray | None = None, temperature: float = 0.05,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"negatives must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
        if strategy == "weighted":
            if similarity is None or np.shape(similarity) != (n_labels, n_labels):
                raise ValueError(f"weighted sampling needs a ({n_labels}, {n_labels}) label similarity matrix")
            label_probabilities(np.zeros(n_labels), 0, np.ones(n_labels, bool), float(temperature))  # validates
        self.strategy = strategy
        self.temperature = float(temperature)
        self.similarity = None if similarity is None else np.asarray(similarity, dtype=np.float64)
        self.labels = np.asarray(index_label_ids, dtype=np.int64)
        self.n_labels = n_labels
        self.by_label = [np.flatnonzero(self.labels == lab) for lab in range(n_labels)]
        self.available = np.array([len(p) > 0 for p in self.by_label])
        self._pools: dict[int, np.ndarray] = {}
        self._probs: dict[int, np.ndarray] = {}

    def other_label_pool(self, anchor_label: int) -> np.ndarray:
        """Index positions of every labelled record whose label is not ``anchor_label``."""
        if anchor_label not in self._pools:
            self._pools[anchor_label] = np.flatnonzero((self.labels != anchor_label) & (self.labels >= 0))
        return self._pools[anchor_label]

    def probabilities(self, anchor_label: int) -> np.ndarray:
        """Label-draw probabilities of the weighted strategy for ``anchor_label``."""
        if anchor_label not in self._probs:
            assert self.similarity is not None
            self._probs[anchor_label] = label_probabilities(
                self.similarity[anchor_label], anchor_label, self.available, self.temperature
            )
        return self._probs[anchor_label]

    def sample(
        self, anchor_label: int, k: int, rng: np.random.Generator, *, ranked: Sequence[int] | None = None,
        similarity_row: np.ndarray | None = None, exclude: Collection[int] = (),
    ) -> list[int]:
        """``k`` negatives (index positions) for an anchor.

        ``ranked`` is the anchor's mined order (``hard``); ``similarity_row`` (one value per label) replaces the
        anchor label's row of the similarity matrix for this anchor (per-anchor ``weighted`` sampling);
        ``exclude`` lists positions that must never be drawn (the anchor's relevant passages).
        """
        pool = self.other_label_pool(anchor_label)
        banned = set(exclude)
        if banned:
            pool = pool[~np.isin(pool, list(banned))]
        if len(pool) == 0:
            raise ValueError("no index record has another label, so no negative can be drawn")
        if self.strategy == "hard":
            if ranked is None:
                raise ValueError("hard negatives need the anchor's ranked index positions (mine_hard_negatives)")
            picked = [int(i) for i in ranked
                      if self.labels[i] != anchor_label and self.labels[i] >= 0 and i not in banned][:k]
            while len(picked) < k:  # fewer candidates than k: top up uniformly
                picked.append(int(rng.choice(pool)))
            return picked
        if self.strategy == "standard":
            return [int(i) for i in rng.choice(pool, size=k, replace=len(pool) < k)]
        picked = [int(rng.choice(pool))]
        if similarity_row is None:
            probs = self.probabilities(anchor_label)
        else:
            if np.shape(similarity_row) != (self.n_labels,):
                raise ValueError(f"similarity_row must hold one value per label ({self.n_labels}); "
                                 f"got shape {np.shape(similarity_row)}")
            probs = label_probabilities(similarity_row, anchor_label, self.available, self.temperature)
        for _ in range(k - 1):
            for _attempt in range(8):  # prefer distinct records when the label has more than one
                label = int(rng.choice(self.n_labels, p=probs))
                cand = int(rng.choice(self.by_label[label]))
                if cand not in picked and cand not in banned:
                    break
            if cand in banned:  # eight draws hit excluded passages: fall back to a uniform one
                cand = int(rng.choice(pool))
            picked.append(cand)
        return picked


def mine_hard_negatives(
    anchor_vectors: np.ndarray, index_vectors: np.ndarray, anchor_label_ids: Sequence[int],
    index_label_ids: Sequence[int], k: int, *, chunk: int = 1024,
    relevant: Sequence[Sequence[int] | None] | None = None, false_negative_share: float = 0.95,
) -> list[list[int]]:
    """For each anchor, the ``k`` most similar index positions whose label differs (vectors L2-normalised).

    With ``relevant`` (per anchor, its relevant index positions, or ``None``), those positions are never
    candidates, nor is any record scoring above ``false_negative_share`` times the anchor's best relevant
    score: a passage that close to the answer is more likely unlabelled-relevant than a negative.
    """
    if not 0 < false_negative_share <= 1:
        raise ValueError(f"false_negative_share must be in (0, 1], got {false_negative_share!r}")
    index_labels = np.asarray(index_label_ids)
    out: list[list[int]] = []
    k_eff = min(k, len(index_labels))
    for start in range(0, len(anchor_vectors), chunk):
        scores = anchor_vectors[start : start + chunk] @ index_vectors.T
        labels = np.asarray(anchor_label_ids[start : start + chunk])
        banned = (index_labels[None, :] == labels[:, None]) | (index_labels[None, :] < 0)
        for row, rel in enumerate(relevant[start : start + chunk] if relevant is not None else ()):
            if rel:
                cols = list(rel)
                banned[row] |= scores[row] > false_negative_share * scores[row, cols].max()
                banned[row, cols] = True
        scores[banned] = -np.inf
        top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        for row, cand in zip(scores, top):
            ordered = cand[np.argsort(-row[cand], kind="stable")]
            out.append([int(i) for i in ordered if np.isfinite(row[i])])
    return out
