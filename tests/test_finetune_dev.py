"""The dev split (seeded, grouped by source_id, stratified by target and language), the dev score and the
language guard, and the passage-KB pieces of sampling: positives from relevant_ids, no relevant passage as a
negative, false-negative filtering of mined candidates. No model is loaded here."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.finetune import (
    NegativeSampler,
    build_examples,
    dev_score,
    language_guard,
    mine_hard_negatives,
    prepare_training_data,
    split_dev,
)
from mlret_rag.kb import KBRecord, QueryRecord

LANGS = ("de", "es", "fr", "hi")


def intent_queries(per_stratum: int = 4, labels: int = 10) -> list[QueryRecord]:
    """``per_stratum`` queries per (label, language); translations of one source row share a source_id."""
    rows = []
    for lab in range(labels):
        for n in range(per_stratum):
            for lang in LANGS:
                rows.append(QueryRecord(f"q {lab} {n} {lang}", f"L{lab}", lang, source_id=f"row-{lab}-{n}"))
    return rows


def test_split_is_seeded_and_disjoint():
    queries = intent_queries()
    a, b = split_dev(queries, share=0.25, seed=3), split_dev(queries, share=0.25, seed=3)
    assert a.dev == b.dev and a.train == b.train
    assert split_dev(queries, share=0.25, seed=4).dev != a.dev
    assert not {q.text for q in a.dev} & {q.text for q in a.train}
    assert len(a.dev) + len(a.train) == len(queries)
    assert [queries[i] for i in a.dev_rows] == a.dev


def test_translations_of_one_source_row_never_sit_on_both_sides():
    split = split_dev(intent_queries(), share=0.25, seed=0)
    dev_sources = {q.source_id for q in split.dev}
    assert dev_sources and not dev_sources & {q.source_id for q in split.train}
    assert all(Counter(q.source_id for q in split.dev)[s] == len(LANGS) for s in dev_sources)  # whole groups


def test_every_stratum_sends_about_its_share_to_dev():
    # ungrouped: 6 queries per (label, language); 1/6 of each stratum should be dev, none may be skipped
    queries = [QueryRecord(f"q {lab} {n} {lang}", f"L{lab}", lang) for lab in range(8) for lang in LANGS for n in range(6)]
    split = split_dev(queries, share=1 / 6, seed=1)
    per_stratum = Counter((q.label, q.lang) for q in split.dev)
    assert set(per_stratum) == {(f"L{lab}", lang) for lab in range(8) for lang in LANGS}
    assert set(per_stratum.values()) == {1}
    # strata smaller than 1/share still contribute, in the right overall proportion
    small = [QueryRecord(f"s {lab} {lang}", f"L{lab}", lang) for lab in range(40) for lang in LANGS for _ in range(2)]
    small = [QueryRecord(f"{q.text} {i}", q.label, q.lang) for i, q in enumerate(small)]
    dev = split_dev(small, share=0.15, seed=0).dev
    assert abs(len(dev) - 0.15 * len(small)) <= 0.05 * len(small)


def test_passage_queries_stratify_by_their_relevant_passage():
    queries = [QueryRecord(f"p{p} {lang} {n}", lang=lang, relevant_ids=(f"p{p}",)) for p in range(30) for lang in LANGS
               for n in range(2)]
    split = split_dev(queries, share=0.5, seed=0)
    assert {q.relevant_ids[0] for q in split.dev} == {f"p{p}" for p in range(30)}


def test_a_dev_split_too_small_is_a_clear_error():
    few = intent_queries(per_stratum=1, labels=3)  # 12 queries
    with pytest.raises(KnowledgeBaseError, match=r"dev split is too small: \d+ of 12 .*--dev-share.*--dev FILE"):
        split_dev(few, share=0.15)
    with pytest.raises(ValueError, match="dev_share must be a number strictly between 0 and 1"):
        split_dev(few, share=1.5)


def test_dev_score_is_the_macro_mean_over_languages_and_the_guard_names_losers():
    base = {"overall": {"mrr": 0.7}, "per_language": {"de": {"mrr": 0.8, "n_queries": 300},
                                                     "sw": {"mrr": 0.5, "n_queries": 10}}}
    tuned = {"overall": {"mrr": 0.8}, "per_language": {"de": {"mrr": 0.9, "n_queries": 300},
                                                      "sw": {"mrr": 0.45, "n_queries": 10}}}
    assert dev_score(tuned) == pytest.approx(0.675)  # not the query-weighted 0.89
    guard = language_guard(base, tuned)
    assert [(g["lang"], g["n_queries"], g["delta"]) for g in guard] == [("sw", 10, pytest.approx(-0.05))]
    assert language_guard(base, tuned, points=0.06) == []


# --- passage knowledge bases ------------------------------------------------------------------------
PASSAGES = [KBRecord(id=f"p{i}", text=f"passage {i}", lang="en", metadata={"doc": f"d{i // 3}"}) for i in range(12)]


def test_passage_queries_select_the_passage_path_and_missing_ids_are_counted(caplog):
    queries = [QueryRecord("frage eins", lang="de", relevant_ids=("p0", "p1")),
               QueryRecord("frage zwei", lang="de", relevant_ids=("p5", "gone-1")),
               QueryRecord("nur fehlend", lang="de", relevant_ids=("gone-2",)),
               QueryRecord("ohne ids", "x", "de")]
    data = prepare_training_data(PASSAGES, queries)
    assert data.passages and len(data.labels) == len(PASSAGES)  # each passage plays a label's role
    assert [a.relevant for a in data.anchors] == [(0, 1), (5,)]
    s = data.stats
    assert (s["relevant_ids_not_in_kb"], s["queries_no_relevant_id_in_kb"], s["queries_without_relevant_ids"]) == (2, 1, 1)
    assert s["unknown_relevant_ids"] == ["gone-1", "gone-2"]
    assert "relevant_ids entries not in the knowledge base" in caplog.text
    grouped = prepare_training_data(PASSAGES, queries, group_by="doc")
    assert grouped.labels == ["d0", "d1", "d2", "d3"] and grouped.index_label_ids[:4] == [0, 0, 0, 1]
    with pytest.raises(KnowledgeBaseError, match="group_by='section': 12 KB records have no such metadata key"):
        prepare_training_data(PASSAGES, queries, group_by="section")


def test_an_unlabelled_kb_without_relevant_ids_says_what_to_give():
    with pytest.raises(KnowledgeBaseError, match="no labels.*relevant_ids"):
        prepare_training_data(PASSAGES, [QueryRecord("frage", "x", "de")])


@pytest.mark.parametrize("strategy", ["standard", "weighted"])
def test_passage_examples_take_a_listed_positive_and_never_a_relevant_negative(strategy):
    queries = [QueryRecord(f"q{i}", lang="de", relevant_ids=(f"p{i}", f"p{(i + 1) % 12}")) for i in range(12)]
    data = prepare_training_data(PASSAGES, queries)
    sim = np.eye(12)
    for i in range(12):  # the passage right after each one is its most similar: a tempting false negative
        sim[i, (i + 1) % 12] = sim[(i + 1) % 12, i] = 0.99
    sampler = NegativeSampler(data.index_label_ids, 12, strategy=strategy, similarity=sim, temperature=0.01)
    for seed in range(20):
        examples, dropped = build_examples(data.anchors, data.index, data.index_label_ids, sampler,
                                           negatives_per_anchor=3, seed=seed)
        assert dropped == 0
        for ex, anchor in zip(examples, data.anchors):
            relevant = {data.index[i].id for i in anchor.relevant}
            assert ex.positive_id in relevant and not relevant & set(ex.negative_ids)


def test_examples_differ_between_epochs_but_repeat_for_the_same_epoch():
    queries = [QueryRecord(f"q{i}", lang="de", relevant_ids=(f"p{i}",)) for i in range(12)]
    data = prepare_training_data(PASSAGES, queries)
    sampler = NegativeSampler(data.index_label_ids, 12, strategy="standard")

    def draw(seed):
        return [e.negative_ids for e in build_examples(data.anchors, data.index, data.index_label_ids, sampler,
                                                       negatives_per_anchor=3, seed=seed)[0]]

    assert draw([0, 1]) == draw([0, 1]) and draw([0, 1]) != draw([0, 2]) and draw(0) != draw([0, 1])


def test_mined_candidates_drop_relevant_ids_and_near_positive_false_negatives():
    index = np.eye(5)
    anchor = np.array([[0.9, 0.88, 0.5, 0.4, 0.1]])  # passage 0 is relevant, 1 scores 98 % of it
    ranked = mine_hard_negatives(anchor, index, [0], list(range(5)), 3, relevant=[(0,)], false_negative_share=0.95)
    assert ranked == [[2, 3, 4]]
    assert mine_hard_negatives(anchor, index, [0], list(range(5)), 3, relevant=[(0,)],
                               false_negative_share=1.0) == [[1, 2, 3]]
    with pytest.raises(ValueError, match="false_negative_share"):
        mine_hard_negatives(anchor, index, [0], list(range(5)), 3, relevant=[(0,)], false_negative_share=0)
