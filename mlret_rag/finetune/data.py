"""From knowledge-base records and (optional) training queries to anchors, an index and label ids.

Three paths:

* **intent/FAQ KB, labelled queries**: the label is the relevance; queries whose label is missing or
  absent from the index are counted and reported, never silently dropped.
* **passage KB, queries with ``relevant_ids``** (any query carrying them selects this path): positives are
  the listed passages; the label's role is taken by the passage itself, or by a grouping (``group_by``,
  a metadata key such as a document id) so that passages of one group are never each other's negatives.
  Listed ids missing from the KB are counted and reported; a query with none left is skipped.
* **no queries**: the knowledge base is split (:func:`.split.split_kb`) and its training part becomes the
  anchors, optionally rendered into other languages by a translator (:mod:`.translate`).
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
    passages: bool = False  # True: relevance comes from relevant_ids, labels are passages or groups


def prepare_training_data(
    kb: Sequence[KBRecord], queries: Sequence[QueryRecord] | None = None, *, train_ratio: float = 0.3,
    seed: int = 0, translator: Translator | None = None, translate_to: Sequence[str] = (),
    group_by: str | None = None,
) -> TrainingData:
    """Anchors and index for fine-tuning; see the module docstring for the three paths.

    Raises:
        KnowledgeBaseError: the KB has no labelled record (and the queries no ``relevant_ids``), the queries
            are empty, ``group_by`` is missing from a record, or no usable anchor is left.
    """
    kb = list(kb)
    if not kb:
        raise KnowledgeBaseError("the knowledge base is empty")
    if queries is not None and any(q.relevant_ids is not None for q in queries):
        return _passage_data(kb, list(queries), group_by)
    if group_by is not None:
        raise ValueError("group_by applies to passage knowledge bases (training queries with relevant_ids)")
    if not any(r.label is not None for r in kb):
        raise KnowledgeBaseError(
            "the knowledge base has no labels: an intent/FAQ knowledge base needs a \"label\" on each record "
            "it trains on; for a passage knowledge base give each training query \"relevant_ids\" (the ids "
            "of the passages that answer it)"
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


def _passage_data(kb: list[KBRecord], queries: list[QueryRecord], group_by: str | None) -> TrainingData:
    """The passage path: each anchor lists the index positions of its relevant passages."""
    if not queries:
        raise KnowledgeBaseError("the training queries are empty")
    if group_by is None:
        keys = [r.id for r in kb]
    else:
        missing = [r.id for r in kb if group_by not in r.metadata]
        if missing:
            raise KnowledgeBaseError(f"group_by={group_by!r}: {len(missing)} KB records have no such metadata key "
                                     f"(first: {missing[0]!r})")
        keys = [str(r.metadata[group_by]) for r in kb]
    labels = sorted(set(keys))
    ids = {key: i for i, key in enumerate(labels)}
    position = {r.id: i for i, r in enumerate(kb)}
    anchors: list[Anchor] = []
    no_relevant_ids = 0
    unknown: Counter[str] = Counter()
    none_found = 0
    for q in queries:
        if q.relevant_ids is None:
            no_relevant_ids += 1
            continue
        found = tuple(dict.fromkeys(position[x] for x in q.relevant_ids if x in position))
        unknown.update(x for x in q.relevant_ids if x not in position)
        if not found:
            none_found += 1
            continue
        anchors.append(Anchor(q.text, ids[keys[found[0]]], q.lang, q.source_id, relevant=found))
    if no_relevant_ids or unknown:
        logger.warning(
            "%d training queries skipped (%d without relevant_ids, %d whose relevant_ids are all missing from the "
            "knowledge base); %d relevant_ids entries not in the knowledge base %s",
            no_relevant_ids + none_found, no_relevant_ids, none_found, sum(unknown.values()), sorted(unknown)[:10],
        )
    if not anchors:
        raise KnowledgeBaseError(
            "no usable training anchor: no query lists a relevant_ids entry that is in the knowledge base"
        )
    index_label_ids = [ids[key] for key in keys]
    stats: dict[str, Any] = {
        "kb_records": len(kb), "training_queries": len(queries), "relevance": "relevant_ids (passages)",
        "group_by": group_by, "queries_without_relevant_ids": no_relevant_ids,
        "queries_no_relevant_id_in_kb": none_found, "relevant_ids_not_in_kb": sum(unknown.values()),
        "unknown_relevant_ids": sorted(unknown)[:20],
        "index_records": len(kb), "labels": len(labels), "anchors": len(anchors),
        "anchors_per_language": dict(Counter(a.lang or "unknown" for a in anchors).most_common()),
    }
    return TrainingData(kb, index_label_ids, labels, anchors, stats, passages=True)
