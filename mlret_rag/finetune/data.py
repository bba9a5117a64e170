"""From knowledge-base records and (optional) training queries to anchors, an index and label ids.

Queries whose label is missing or absent from the index are counted and reported, never silently
dropped; with no queries the knowledge base is split (:func:`.split.split_kb`) and its training part
becomes the anchors, optionally rendered into other languages by a translator (:mod:`.translate`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import KnowledgeBaseError
from ..kb import KBRecord, QueryRecord
from .examples import Anchor
from .split import split_kb
from .translate import Translator, translate_texts

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Index records with their label ids, the anchors, and counts of what was dropped and why."""

    index: list[KBRecord]
    index_label_ids: list[int]
    labels: list[str]
    anchors: list[Anchor]
    stats: dict[str, Any] = field(default_factory=dict)


def prepare_training_data(
    kb: Sequence[KBRecord], queries: Sequence[QueryRecord] | None = None, *, train_ratio: float = 0.3,
    seed: int = 0, translator: Translator | None = None, translate_to: Sequence[str] = (),
) -> TrainingData:
    """Anchors and index for fine-tuning; see the module docstring for the two paths.

    Raises:
        KnowledgeBaseError: the KB has no labelled record, the queries are empty, or no usable anchor is left.
    """
    kb = list(kb)
    if not kb:
        raise KnowledgeBaseError("the knowledge base is empty")
    if not any(r.label is not None for r in kb):
        raise KnowledgeBaseError(
            "the knowledge base has no labels: fine-tuning needs a \"label\" on each record it trains on"
        )
    stats: dict[str, Any] = {"kb_records": len(kb)}
    if queries is not None:
        queries = list(queries)
        if not queries:
            raise KnowledgeBaseError("the training queries are empty")
        index = kb
        labels = sorted({r.label for r in index if r.label is not None})
        ids = {label: i for i, label in enumerate(labels)}
        anchors, unlabelled, unknown = [], 0, Counter()
        for q in queries:
            if q.label is None:
                unlabelled += 1
            elif q.label not in ids:
                unknown[q.label] += 1
            else:
                anchors.append(Anchor(q.text, ids[q.label], q.lang, q.source_id))
        stats.update(training_queries=len(queries), queries_without_label=unlabelled,
                     queries_label_not_in_kb=sum(unknown.values()), unknown_labels=dict(unknown.most_common()))
        if unlabelled or unknown:
            logger.warning(
                "%d training queries skipped: %d without a label, %d whose label is not in the knowledge base %s",
                unlabelled + sum(unknown.values()), unlabelled, sum(unknown.values()), sorted(unknown)[:10],
            )
    else:
        split = split_kb(kb, train_ratio=train_ratio, seed=seed)
        index = split.index
        labels = sorted({r.label for r in index if r.label is not None})
        ids = {label: i for i, label in enumerate(labels)}
        anchors = [Anchor(r.text, ids[r.label], r.lang, r.id) for r in split.train]  # type: ignore[index]
        if translate_to and translator is None:
            raise ValueError("translate_to was given without a translator")
        for lang in translate_to:
            texts = translate_texts(translator, [r.text for r in split.train], lang)  # type: ignore[arg-type]
            anchors += [Anchor(t, ids[r.label], lang, r.id) for t, r in zip(texts, split.train)]  # type: ignore[index]
        stats.update(train_ratio=train_ratio, kb_train_rows=len(split.train),
                     kb_train_rows_dropped_no_index_label=split.n_dropped, translated_to=list(translate_to))
    if not anchors:
        raise KnowledgeBaseError(
            "no usable training anchor: every query lacks a label or has a label the knowledge base does not have"
        )
    index_label_ids = [ids[r.label] if r.label is not None else -1 for r in index]
    stats.update(index_records=len(index), labels=len(labels), anchors=len(anchors),
                 anchors_per_language=dict(Counter(a.lang or "unknown" for a in anchors).most_common()))
    return TrainingData(index, index_label_ids, labels, anchors, stats)
