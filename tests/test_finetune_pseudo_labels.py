"""Self-training's selection rule on data where the answer is known, and the threshold set on dev alone."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from mlret_rag.datasets.home_assistant import build_intent_benchmark
from mlret_rag.demo import demo_train_questions_path, load_demo_kb, load_demo_questions
from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.finetune import (
    Anchor,
    PseudoLabeller,
    Voters,
    agreed_margins,
    calibration_languages,
    calibration_plan,
    choose_threshold,
    estimated_precision,
    precision_lower_bound,
    propagated_targets,
    split_dev,
    target_margins,
    unlabelled_questions,
)
from mlret_rag.finetune.train import pseudo_label_line
from mlret_rag.kb import QueryRecord, load_queries


def _unit(rows):
    v = np.asarray(rows, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_margin_is_the_best_label_over_the_runner_up_each_label_scoring_as_its_best_record():
    index = np.eye(4)  # records 0,1 -> label 0; record 2 -> label 1; record 3 -> label 2
    labels = [0, 0, 1, 2]
    queries = np.array([[0.1, 0.9, 0.3, 0.0],   # label 0 via record 1 (0.9) over label 1 (0.3)
                        [0.2, 0.0, 0.5, 0.45],  # label 1 (0.5) over label 2 (0.45)
                        [0.0, 0.0, 0.0, 1.0]])  # label 2 (1.0) over the rest (0.0)
    best, margin = target_margins(queries, index, labels)
    assert best.tolist() == [0, 1, 2]
    assert margin == pytest.approx([0.6, 0.05, 1.0])


def test_records_without_a_target_are_ignored_and_one_target_scores_itself():
    index = np.eye(3)
    best, margin = target_margins(np.array([[0.2, 0.9, 0.7]]), index, [5, -1, 5])
    assert best.tolist() == [5] and margin == pytest.approx([0.7])
    with pytest.raises(ValueError, match="no index record has a target"):
        target_margins(np.array([[1.0, 0, 0]]), index, [-1, -1, -1])


def test_passages_are_their_own_targets():
    index = _unit([[1, 0], [0.8, 0.6], [0, 1]])
    best, margin = target_margins(_unit([[0.9, 0.45]]), index, [0, 1, 2])
    assert best.tolist() == [1]
    q = _unit([[0.9, 0.45]])[0]
    assert margin[0] == pytest.approx(q @ index[1] - q @ index[0])


def test_a_pseudo_label_needs_the_voters_to_agree_and_its_confidence_adds_both_margins():
    index, labels = np.eye(4)[:3], [0, 1, 2]  # the KB: one record per label
    voters, voted = np.eye(4)[[0, 1, 3]], [0, 1, 2]  # label 2's voting query lies elsewhere than its record
    queries = np.array([[0.9, 0.3, 0.0, 0.1],   # KB: 0 by 0.6; voters: 0 by 0.6
                        [0.2, 0.0, 0.5, 0.6],   # KB: 2 by 0.3; voters: 2 by 0.4
                        [0.5, 0.1, 0.6, 0.0]])  # KB: 2 by 0.1; voters: 0 -> no label
    best, confidence = agreed_margins(queries, index, labels, voters, voted)
    assert best.tolist() == [0, 2, 2]
    assert confidence[:2] == pytest.approx([1.2, 0.7]) and confidence[2] == -np.inf
    # a query's own translation may not vote on it: without voter 0, label 1's voter wins for the first query
    exclude = np.zeros((3, 3), dtype=bool)
    exclude[0, 0] = True
    _, confidence = agreed_margins(queries, index, labels, voters, voted, exclude)
    assert confidence[0] == -np.inf and confidence[1] == pytest.approx(0.7)


def test_a_disagreement_never_clears_a_threshold_even_when_right():
    assert choose_threshold([1.2, 0.7, -np.inf], [True, True, True], precision=1.0, min_clearing=1) == pytest.approx(0.7)
    assert choose_threshold([-np.inf] * 20, [True] * 20, min_clearing=1) is None
    assert estimated_precision([0.2, 0.4, -np.inf], [False, True, True], [0.4]) == pytest.approx(1.0)


def test_voters_sharing_a_source_with_a_calibration_query_are_excluded_from_it():
    voters = Voters(["a", "b", "c"], [0, 1, 0], ["s1", None, "s2"], dev_sources=["s1", None])
    assert voters.exclusions().tolist() == [[True, False, False], [False, False, False]]
    assert Voters(["a"], [0], [None], dev_sources=[None, "s1"]).exclusions() is None


def test_threshold_is_the_lowest_margin_whose_cleared_dev_queries_reach_the_precision():
    # sorted by margin: 10 correct, then one wrong (11 cleared: 10/11 = 0.909), then wrong ones
    margins = [1.0 - 0.05 * i for i in range(14)]
    correct = [True] * 10 + [False] + [True, False, False]
    t = choose_threshold(margins, correct, precision=0.9, min_clearing=5)
    assert t == pytest.approx(margins[11])  # 11/12 = 0.917 >= 0.9; 13 cleared would be 11/13 = 0.846
    assert choose_threshold(margins, correct, precision=0.95, min_clearing=5) == pytest.approx(margins[9])
    assert choose_threshold(margins, correct, precision=0.9, min_clearing=13) is None  # never that many at 90 %


def test_a_cut_never_splits_equal_margins():
    margins = [0.9] * 5 + [0.5, 0.5, 0.5]
    correct = [True] * 5 + [True, False, False]
    assert choose_threshold(margins, correct, precision=0.9, min_clearing=1) == pytest.approx(0.9)
    assert choose_threshold([], [], precision=0.9) is None
    with pytest.raises(ValueError, match="differ in length"):
        choose_threshold([0.1, 0.2], [True])


def test_estimated_precision_weighs_dev_accuracy_by_the_kept_margins():
    dev_m = np.linspace(0, 1, 101)
    dev_c = dev_m >= 0.5  # everything above 0.5 is right, below wrong
    assert estimated_precision(dev_m, dev_c, [0.8, 0.9, 0.95]) == pytest.approx(1.0)
    assert estimated_precision(dev_m, dev_c, [0.8, 0.1]) == pytest.approx(0.5)
    assert estimated_precision(dev_m, dev_c, []) is None


def test_the_precision_lower_bound_is_clopper_pearson_one_sided():
    assert precision_lower_bound([True] * 40) == pytest.approx(0.05 ** (1 / 40))  # n of n right: alpha ** (1/n)
    assert precision_lower_bound([True] * 400) > precision_lower_bound([True] * 40) > precision_lower_bound([True] * 10)
    nine_of_ten = precision_lower_bound([True] * 9 + [False])
    assert 0.55 < nine_of_ten < 0.9  # the exact value, from the binomial tail:
    assert sum(math.comb(10, k) * nine_of_ten ** k * (1 - nine_of_ten) ** (10 - k)
               for k in (9, 10)) == pytest.approx(0.05)
    assert precision_lower_bound([True] * 9 + [False], confidence=0.5) > nine_of_ten
    assert precision_lower_bound([False] * 5) == 0.0 and precision_lower_bound([]) is None
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        precision_lower_bound([True], confidence=1.0)


def test_a_label_propagates_from_same_language_seeds_only_and_needs_two_of_their_targets_to_compare():
    vecs = _unit([[1, 0], [0, 1],          # de seeds: targets 1 and 2
                  [1, 0], [0.6, 0.8],      # fr seeds: targets 1 and 3
                  [0, 1],                  # lt seed: target 3, its only one
                  [0.9, 0.3], [0, 1],      # de and fr candidates
                  [0, 1], [0, 1]])         # lt and sw (no seed) candidates
    langs = ["de", "de", "fr", "fr", "lt", "de", "fr", "lt", "sw"]
    best, margin = propagated_targets(vecs, langs, [0, 1, 2, 3, 4], [1, 2, 1, 3, 3], [5, 6, 7, 8])
    de = vecs[5]
    assert best[:2].tolist() == [1, 3]  # the fr candidate sits on a de seed of target 2, which may not vote on it
    assert margin[:2] == pytest.approx([de @ vecs[0] - de @ vecs[1], 0.8])
    assert margin[2:].tolist() == [-np.inf, -np.inf]  # one target seeded in lt, none in sw: nothing to compare
    assert propagated_targets(vecs, langs, [], [], [5])[1].tolist() == [-np.inf]
    assert len(propagated_targets(vecs, langs, [0, 1], [1, 2], [])[0]) == 0
    with pytest.raises(ValueError, match="propagation needs the language of every calibration query"):
        _labeller([QueryRecord("Where is my parcel?")], propagation=True)


def test_labels_propagate_below_the_threshold_at_a_margin_set_on_the_calibration_queries_alone(encoder):
    bench = build_intent_benchmark(kb_per_intent=20, train_per_intent=3, eval_per_intent=4, seed=0,
                                   pool_languages=("de-CH", "eu", "ga", "lb", "lt", "lv"), pool_per_intent=40)
    held = set(split_dev(bench.train_queries, share=0.15, seed=1).dev_rows)  # the benchmark's seed 1
    calibration = [q for i, q in enumerate(bench.train_queries) if i not in held]
    labels = sorted({r.label for r in bench.index})
    ids = {label: i for i, label in enumerate(labels)}
    index_ids = [ids[r.label] for r in bench.index]
    truth = {q.text: q.label for q in bench.unlabelled_pool}

    def labeller(pool, propagation):
        return PseudoLabeller([QueryRecord(q.text, lang=q.lang) for q in pool], [q.text for q in calibration],
                              [(ids[q.label],) for q in calibration], [r.text for r in bench.index], index_ids,
                              index_ids, False, propagation=propagation, dev_langs=[q.lang for q in calibration])

    pool = bench.unlabelled_pool[::4]
    plain_anchors, plain = labeller(pool, False).round(encoder, 0)
    anchors, report = labeller(pool, True).round(encoder, 0)
    _, half = labeller(pool[::2], True).round(encoder, 0)
    assert "propagated" not in plain and report["threshold"] == plain["threshold"]
    assert report["propagation_threshold"] == half["propagation_threshold"] is not None  # the pool does not move it
    assert report["propagation_dev_precision"] >= 0.9
    kb = {(a.text, a.label_id) for a in plain_anchors}
    spread = [a for a in anchors if (a.text, a.label_id) not in kb]
    assert report["cleared"] == plain["cleared"] + report["propagated"] == len(anchors) and len(spread) == report[
        "propagated"] > 0 and sum(report["propagated_per_language"].values()) == len(spread)
    assert kb < {(a.text, a.label_id) for a in anchors}
    # each took the label of its most similar KB-labelled question of its language
    for a in spread:
        same = [s for s in plain_anchors if s.lang == a.lang]
        sims = encoder.encode_queries([a.text]) @ encoder.encode_queries([s.text for s in same]).T
        assert same[int(np.argmax(sims))].label_id == a.label_id
    assert sum(truth[a.text] == labels[a.label_id] for a in spread) / len(spread) >= 0.8
    assert report["estimated_precision"] != plain["estimated_precision"]  # the estimate covers them too
    line = pseudo_label_line(report)  # what the CLI prints for the epoch
    assert f"{plain['cleared']} new above margin" in line and f"{len(spread)} more propagated at margin" in line


def test_the_questions_are_texts_only_each_once_and_never_a_labelled_query(caplog):
    rows = [QueryRecord("Wo ist mis Päckli?", "order_status", "de-CH"), QueryRecord("wo ist  MIS päckli?"),
            QueryRecord("Track my order"), QueryRecord("Passwort vergässe", lang="de-CH")]
    with caplog.at_level(logging.WARNING):
        kept, stats = unlabelled_questions(rows, known_texts=["track my order"])
    assert [q.text for q in kept] == ["Wo ist mis Päckli?", "Passwort vergässe"]
    assert all(q.label is None for q in kept)
    assert stats == {"given": 4, "used": 2, "labels_ignored": 1, "duplicates_dropped": 1,
                     "also_labelled_dropped": 1, "per_language": {"de-CH": 2}}
    assert "1 rows carry a label or relevant_ids; ignored" in caplog.text
    with pytest.raises(KnowledgeBaseError, match="no questions"):
        unlabelled_questions([])
    with pytest.raises(KnowledgeBaseError, match="every question is also a labelled"):
        unlabelled_questions([QueryRecord("Track my order")], known_texts=["TRACK my order"])


def _labeller(questions, **kw):
    kb = load_demo_kb()
    labels = sorted({r.label for r in kb})
    ids = {label: i for i, label in enumerate(labels)}
    dev = load_demo_questions()
    label_ids = [ids[r.label] for r in kb]
    return PseudoLabeller(questions, [q.text for q in dev], [(ids[q.label],) for q in dev], [r.text for r in kb],
                          label_ids, label_ids, False, **kw), labels


def test_the_threshold_depends_on_dev_alone_and_kept_questions_carry_their_best_label(encoder):
    train = load_queries(demo_train_questions_path())
    questions = [QueryRecord(q.text, lang=q.lang) for q in train]
    full, labels = _labeller(questions, precision=0.8)
    half, _ = _labeller(questions[::2], precision=0.8)
    anchors, report = full.round(encoder, 0)
    _, other = half.round(encoder, 0)
    assert report["threshold"] == other["threshold"] is not None  # the pool does not move it
    assert report["dev_precision"] == other["dev_precision"] >= 0.8
    # the bound is set on the dev queries above the threshold alone, and below their precision (they are few)
    assert 0 < report["precision_lower_bound"] == other["precision_lower_bound"] < report["dev_precision"]
    assert 0 < report["cleared"] == report["used"] == len(anchors) <= len(questions)
    assert sum(report["cleared_per_language"].values()) == report["cleared"]
    truth = {q.text: q.label for q in train}
    right = sum(truth[a.text] == labels[a.label_id] for a in anchors) / len(anchors)
    assert right >= 0.6 and all(a.source_id is None and a.relevant is None for a in anchors)


def test_with_voters_every_pseudo_label_is_also_the_nearest_training_queries_label(encoder):
    train = load_queries(demo_train_questions_path())
    voting, pool = train[::2], [QueryRecord(q.text, lang=q.lang) for q in train[1::2]]
    plain, labels = _labeller(pool, precision=0.8)
    ids = {label: i for i, label in enumerate(labels)}
    voters = Voters([q.text for q in voting], [ids[q.label] for q in voting], [None] * len(voting),
                    [None] * len(plain.dev_texts))
    agreed, _ = _labeller(pool, precision=0.8, voters=voters)
    anchors, report = agreed.round(encoder, 0)
    assert report["voters"] == len(voting) and plain.round(encoder, 0)[1]["voters"] is None
    assert 0 < report["cleared"] == len(anchors) and report["dev_precision"] >= 0.8
    voted, _ = target_margins(encoder.encode_queries([a.text for a in anchors]),
                              encoder.encode_queries(voters.texts), voters.targets)
    assert voted.tolist() == [a.label_id for a in anchors]


def test_a_label_once_given_stays_and_only_new_questions_are_labelled(encoder):
    questions = [QueryRecord(q.text, lang=q.lang) for q in load_queries(demo_train_questions_path())]
    labeller, _ = _labeller(questions, precision=0.8)
    first, report = labeller.round(encoder, 0)
    again, second = labeller.round(encoder, 1)  # the same model: nothing new clears, the labels stand
    assert report["cleared"] == report["labelled"] > 0 and second["cleared"] == 0
    assert second["labelled"] == report["labelled"] and {(a.text, a.label_id) for a in again} == {
        (a.text, a.label_id) for a in first}
    assert second["estimated_precision"] is None and second["estimated_precision_all"] == report["estimated_precision"]
    assert second["precision_lower_bound"] is None
    assert second["precision_lower_bound_all"] == report["precision_lower_bound"]


def test_the_per_epoch_cap_is_a_seeded_sample(encoder):
    questions = [QueryRecord(q.text, lang=q.lang) for q in load_queries(demo_train_questions_path())]
    labeller, _ = _labeller(questions, precision=0.5, per_epoch=5, seed=3)
    first, report = labeller.round(encoder, 0)
    again, _ = labeller.round(encoder, 0)
    later, _ = labeller.round(encoder, 1)
    assert report["cleared"] > 5 and report["used"] == len(first) == 5
    assert sum(report["used_per_language"].values()) == 5
    assert [a.text for a in first] == [a.text for a in again]
    assert [a.text for a in first] != [a.text for a in later]


def test_calibration_languages_are_a_seeded_choice_that_leaves_one_language_to_train(caplog):
    anchors = [Anchor(f"q{i}", 0, lang) for i, lang in enumerate(["de", "fr", "es", "pl", "de", None])]
    chosen = calibration_languages(anchors, 2, seed=1)
    assert len(chosen) == 2 and set(chosen) <= {"de", "fr", "es", "pl"} and list(chosen) == sorted(chosen)
    assert calibration_languages(anchors, 2, seed=1) == chosen
    assert {calibration_languages(anchors, 2, seed=s) for s in range(8)} != {chosen}  # the seed decides
    assert len(calibration_languages(anchors, 9, seed=1)) == 3  # one of the four stays in training
    assert calibration_languages(anchors, 0, seed=1) == ()
    with caplog.at_level(logging.WARNING):
        assert calibration_languages([Anchor("q", 0, "de"), Anchor("r", 1, "de")], 1, seed=1) == ()
    assert "two or more languages (found 1)" in caplog.text
    eight = [Anchor(f"{lang} {i}", 0, lang) for lang in ["ar", "de", "es", "fr", "hi", "pl", "ru", "zh"] for i in range(10)]
    assert calibration_languages(eight, None, seed=2) == calibration_languages(eight, 2, seed=2)  # a quarter
    assert calibration_languages(eight[::2], None, seed=2) == ()  # 10 queries would calibrate: too few, dev does


def test_when_the_base_model_gives_every_label_every_training_language_calibrates():
    eight = [Anchor(f"{lang} {i}", 0, lang) for lang in ["ar", "de", "es", "fr", "hi", "pl", "ru", "zh"] for i in range(10)]
    assert calibration_languages(eight, None, seed=2, labels_once=True) == ("ar", "de", "es", "fr", "hi", "pl", "ru", "zh")
    assert calibration_languages(eight, 2, seed=2, labels_once=True) == calibration_languages(eight, 2, seed=2)
    assert calibration_languages(eight[:10], None, seed=2, labels_once=True) == ()  # one language: dev calibrates
    assert calibration_languages(eight[5:15], None, seed=2, labels_once=True) == ()  # 10 queries: too few


def test_the_calibration_plan_gives_one_labelling_epoch_and_then_every_language_calibrates():
    eight = [Anchor(f"{lang} {i}", 0, lang) for lang in ["ar", "de", "es", "fr", "hi", "pl", "ru", "zh"] for i in range(10)]
    quarter = calibration_languages(eight, None, seed=2)
    assert calibration_plan(eight, None, seed=2) == (("ar", "de", "es", "fr", "hi", "pl", "ru", "zh"), 1)
    assert calibration_plan(eight, None, seed=2, labelling_epochs=1) == calibration_plan(eight, None, seed=2)
    assert calibration_plan(eight, None, seed=2, labelling_epochs=3) == (quarter, 3)  # later labels: they sit out
    assert calibration_plan(eight, None, seed=2, agreement=True) == (quarter, 1)  # the others' queries vote
    assert calibration_plan(eight, 3, seed=2) == (calibration_languages(eight, 3, seed=2), 1)
    assert calibration_plan(eight[:10], None, seed=2) == ((), None)  # dev calibrates; every epoch labels
    assert calibration_plan(eight[:10], None, seed=2, labelling_epochs=2) == ((), 2)


def test_after_the_labelling_epochs_nothing_new_is_labelled_and_the_calibration_languages_train(encoder):
    questions = [QueryRecord(q.text, lang=q.lang) for q in load_queries(demo_train_questions_path())]
    labeller, _ = _labeller(questions, precision=0.8, calibration_languages=("sw",), labelling_epochs=1)
    assert labeller.sitting_out(0) == frozenset()  # its labels come before epoch 1 trains: it trains them too
    two, _ = _labeller(questions, precision=0.8, calibration_languages=("sw",), labelling_epochs=2)
    assert two.sitting_out(0) == {"sw"} and two.sitting_out(1) == two.sitting_out(2) == frozenset()
    first, report = labeller.round(encoder, 0)
    later, after = labeller.round(encoder, 1)
    assert report["labelling"] and report["calibrated_on"] == ["sw"] and report["cleared"] > 0
    assert not after["labelling"] and after["threshold"] is None and after["cleared"] == 0
    assert after["labelled"] == report["labelled"] and {a.text for a in later} == {a.text for a in first}
