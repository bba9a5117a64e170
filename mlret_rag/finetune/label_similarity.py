"""How confusable two labels are, under the base model; drives the ``weighted`` sampler (:mod:`.negatives`).

Three sources (``finetune(similarity=...)``):

* ``"centroid"`` (:func:`centroid_similarity`): cosine between label centroids, per label.
* ``"confusion"`` (:func:`confusion_similarity`): how often the training anchors of one label retrieve
  index records of another label among their top ``k`` (reciprocal-rank weighted), per label.
* ``"anchor"`` (:func:`anchor_similarity`): cosine between each anchor and every label centroid, per anchor.

The centroid of a label is the mean of the L2-normalised document embeddings of its index records,
re-normalised; the similarity of two labels is the cosine of their centroids. When the knowledge base
provides a description per label, the cosine between the description embeddings can be used instead.
The diagonal is 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SIMILARITIES = ("centroid", "confusion", "anchor")


def centroid_similarity(embeddings: np.ndarray, label_ids: Sequence[int], n_labels: int) -> np.ndarray:
    """(n_labels, n_labels) cosine matrix between the normalised centroids of each label's embeddings.

    Labels with no embedding get a zero row and column (and 1 on the diagonal).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(label_ids, dtype=np.int64)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise ValueError(f"embeddings must be (n, d) with one label id per row; got {emb.shape} and {len(ids)} ids")
    centroids = _centroids(emb, ids, n_labels)
    sim = centroids @ centroids.T
    np.fill_diagonal(sim, 1.0)
    return sim


def label_similarity(
    encoder, index_texts: Sequence[str], index_label_ids: Sequence[int], n_labels: int,
    *, descriptions: Mapping[int, str] | None = None,
) -> np.ndarray:
    """Label-similarity matrix under ``encoder`` (a :class:`~mlret_rag.MultilingualEncoder`).

    With ``descriptions`` (label id -> text) covering every label, the cosine between the description
    embeddings is used; otherwise the cosine between label centroids of the index records.
    """
    if descriptions and set(range(n_labels)) <= set(descriptions):
        vectors = encoder.encode_documents([descriptions[i] for i in range(n_labels)])
        return centroid_similarity(vectors, list(range(n_labels)), n_labels)
    vectors = encoder.encode_documents(list(index_texts))
    return centroid_similarity(vectors, index_label_ids, n_labels)


def _centroids(embeddings: np.ndarray, label_ids: Sequence[int], n_labels: int) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(label_ids, dtype=np.int64)
    keep = ids >= 0  # -1 marks an unlabelled record; it belongs to no centroid
    centroids = np.zeros((n_labels, emb.shape[1]))
    np.add.at(centroids, ids[keep], emb[keep])
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.divide(centroids, norms, out=np.zeros_like(centroids), where=norms > 0)


def anchor_similarity(
    anchor_vectors: np.ndarray, index_vectors: np.ndarray, index_label_ids: Sequence[int], n_labels: int,
) -> np.ndarray:
    """(n_anchors, n_labels) cosine between each anchor and each label's index centroid (0 for empty labels)."""
    centroids = _centroids(index_vectors, index_label_ids, n_labels)
    return np.asarray(anchor_vectors, dtype=np.float64) @ centroids.T


def confusion_similarity(
    anchor_vectors: np.ndarray, anchor_label_ids: Sequence[int], index_vectors: np.ndarray,
    index_label_ids: Sequence[int], n_labels: int, *, k: int = 10,
) -> np.ndarray:
    """(n_labels, n_labels) confusion of label ``a`` with label ``b`` under the base model.

    For every anchor of label ``a``, each index record of label ``b != a`` among its ``k`` nearest adds
    ``1 / rank``; row ``a`` is then divided by its largest off-diagonal value, so the most confused label
    scores 1 and never-confused labels 0 (a row with no confusion at all stays 0: uniform sampling). The
    diagonal is 1. Vectors are L2-normalised.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    a_ids = np.asarray(anchor_label_ids, dtype=np.int64)
    i_ids = np.asarray(index_label_ids, dtype=np.int64)
    if len(a_ids) != len(anchor_vectors) or len(i_ids) != len(index_vectors):
        raise ValueError("one label id per anchor vector and per index vector is needed")
    conf = np.zeros((n_labels, n_labels))
    k_eff = min(k, len(i_ids))
    weights = 1.0 / np.arange(1, k_eff + 1)
    for start in range(0, len(a_ids), 1024):
        scores = np.asarray(anchor_vectors[start:start + 1024]) @ np.asarray(index_vectors).T
        scores[:, i_ids < 0] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k_eff]
        for row_label, cand in zip(a_ids[start:start + 1024], top):
            hit = i_ids[cand]
            ok = (hit != row_label) & (hit >= 0)
            np.add.at(conf[row_label], hit[ok], weights[ok])
    np.fill_diagonal(conf, 0.0)
    peak = conf.max(axis=1, keepdims=True)
    conf = np.divide(conf, peak, out=np.zeros_like(conf), where=peak > 0)
    np.fill_diagonal(conf, 1.0)
    return conf
