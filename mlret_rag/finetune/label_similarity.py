"""How confusable two labels are: cosine between label centroids (or label descriptions) under a model.

The centroid of a label is the mean of the L2-normalised document embeddings of its index records,
re-normalised; the similarity of two labels is the cosine of their centroids. When the knowledge base
provides a description per label, the cosine between the description embeddings can be used instead.
The diagonal is 1. This matrix drives the ``weighted`` negative sampler (see :mod:`.negatives`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def centroid_similarity(embeddings: np.ndarray, label_ids: Sequence[int], n_labels: int) -> np.ndarray:
    """(n_labels, n_labels) cosine matrix between the normalised centroids of each label's embeddings.

    Labels with no embedding get a zero row and column (and 1 on the diagonal).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(label_ids, dtype=np.int64)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise ValueError(f"embeddings must be (n, d) with one label id per row; got {emb.shape} and {len(ids)} ids")
    centroids = np.zeros((n_labels, emb.shape[1]))
    np.add.at(centroids, ids, emb)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids = np.divide(centroids, norms, out=np.zeros_like(centroids), where=norms > 0)
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
