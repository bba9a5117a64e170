"""The Home Assistant intents loader: determinism, no user-data templates, no digit leaks, disjoint splits."""

from __future__ import annotations

import re

import pytest

from mlret_rag.datasets import (
    available_languages,
    build_intent_benchmark,
    intent_descriptions,
    language_coverage,
    load_home_assistant_intents,
)
from mlret_rag.datasets import home_assistant as ha
from mlret_rag.kb import KBRecord, QueryRecord


@pytest.fixture(scope="module")
def small_bench():
    return build_intent_benchmark(train_languages=("de",), zero_shot_languages=("nl",), kb_per_intent=8,
                                  train_per_intent=4, eval_per_intent=2, seed=3)


def test_sampling_is_deterministic_under_a_seed_and_changes_with_it():
    a = load_home_assistant_intents(["en", "de"], per_intent=6, seed=1)
    b = load_home_assistant_intents(["de", "en"], per_intent=6, seed=1)
    c = load_home_assistant_intents(["en"], per_intent=6, seed=2)
    assert a == b
    assert a["en"] != c["en"]
    # a language's sample does not depend on which other languages were asked for
    assert load_home_assistant_intents(["en"], per_intent=6, seed=1)["en"] == a["en"]


def test_cap_per_intent_distinct_texts_and_known_intents():
    data = load_home_assistant_intents(["en"], per_intent=5, seed=0)["en"]
    per_intent: dict[str, list[str]] = {}
    for text, intent in data:
        per_intent.setdefault(intent, []).append(text.casefold())
    assert all(1 <= len(v) <= 5 for v in per_intent.values())
    assert all(len(v) == len(set(v)) for v in per_intent.values())
    assert {"HassTurnOn", "HassTurnOff", "HassStartTimer"} <= set(per_intent)  # near-duplicates kept
    assert set(per_intent) <= set(intent_descriptions())


def test_no_user_data_placeholders_and_no_digits():
    data = load_home_assistant_intents(["en", "de", "fr"], per_intent=15, seed=0)
    for rows in data.values():
        for text, _ in rows:
            assert not re.search(r"[{}<>\[\]0-9]", text), text
    # intents whose templates all need a wildcard message never appear
    assert "HassBroadcast" not in {intent for _, intent in data["en"]}
    # timer intents survive, with numbers written as words
    timers = [t for t, i in data["en"] if i == "HassStartTimer"]
    assert timers and any(w in " ".join(timers) for w in ("one", "two", "three", "five", "ten", "twenty"))


def test_templates_needing_user_names_or_wildcards_are_skipped():
    from hassil import Intents

    grammar = Intents.from_dict({
        "language": "en",
        "intents": {"X": {"data": [{"sentences": [
            "turn on {name}", "turn on [the] lights in {area}", "note {message}", "turn on the lights",
            "set it to {level}",
        ]}]}},
        "lists": {"message": {"wildcard": True}, "level": {"range": {"from": 1, "to": 3}}},
    })
    usable = [s.text for s, _, _ in ha.usable_templates(grammar, grammar.intents["X"])]
    assert usable == ["turn on the lights", "set it to {level}"]
    texts = ha.sample_intent("en", "X", ha.usable_templates(grammar, grammar.intents["X"]), 10, 0)
    assert set(texts) == {"turn on the lights", "set it to one", "set it to two", "set it to three"}


def test_unknown_language_and_bad_sizes_are_named():
    with pytest.raises(ValueError, match="xx"):
        load_home_assistant_intents(["xx"])
    with pytest.raises(ValueError, match="per_intent"):
        load_home_assistant_intents(["en"], per_intent=0)
    with pytest.raises(ValueError, match="both"):
        build_intent_benchmark(train_languages=("de",), zero_shot_languages=("de",))
    with pytest.raises(ValueError, match="index_ratio"):
        build_intent_benchmark(index_ratio=1.0)


def test_language_coverage_counts_intents():
    cov = language_coverage({"a": [("x", "I1"), ("y", "I1"), ("z", "I2")], "b": []})
    assert cov == {"a": 2, "b": 0}
    assert "en" in available_languages() and "de" in available_languages()


def test_benchmark_splits_are_disjoint_and_labelled(small_bench):
    b = small_bench
    assert all(isinstance(r, KBRecord) and r.lang == "en" and r.label for r in b.index + b.kb_train)
    assert all(isinstance(q, QueryRecord) and q.label for q in b.train_queries + b.eval_queries)
    assert {q.lang for q in b.train_queries} == {"de"}
    assert {q.lang for q in b.eval_queries} == {"en", "de", "nl"}
    assert b.zero_shot_languages == ("nl",) and b.train_languages == ("de",)
    labels = set(b.labels)
    assert {r.label for r in b.kb_train} <= labels
    assert {q.label for q in b.train_queries + b.eval_queries} <= labels
    ids = [r.id for r in b.index + b.kb_train]
    assert len(ids) == len(set(ids))
    train_texts = {t.casefold() for t in [r.text for r in b.index + b.kb_train] + [q.text for q in b.train_queries]}
    assert not train_texts & {q.text.casefold() for q in b.eval_queries}
    assert not {r.id for r in b.index} & {r.id for r in b.kb_train}
    assert set(b.descriptions) == labels and b.descriptions["HassTurnOn"]


def test_benchmark_is_reproducible(small_bench):
    again = build_intent_benchmark(train_languages=("de",), zero_shot_languages=("nl",), kb_per_intent=8,
                                   train_per_intent=4, eval_per_intent=2, seed=3)
    assert again == small_bench
    other = build_intent_benchmark(train_languages=("de",), zero_shot_languages=("nl",), kb_per_intent=8,
                                   train_per_intent=4, eval_per_intent=2, seed=4)
    assert other.index != small_bench.index


def test_language_groups_and_saved_files_reload(small_bench, tmp_path):
    from mlret_rag.kb import load_kb, load_queries

    assert small_bench.language_groups == {"en": "pivot", "de": "train", "nl": "zero-shot"}
    paths = small_bench.save(tmp_path)
    assert load_kb(paths["index"]) == small_bench.index
    assert load_kb(paths["kb_train"]) == small_bench.kb_train
    assert load_queries(paths["train_queries"]) == small_bench.train_queries
    assert load_queries(paths["eval_queries"]) == small_bench.eval_queries


def test_regional_variants_of_training_languages_are_marked():
    b = ha.IntentBenchmark(index=[], kb_train=[], train_queries=[], eval_queries=[],
                           train_languages=("de", "zh-CN"), zero_shot_languages=("de-CH", "zh-TW", "sw"))
    assert b.language_groups == {"en": "pivot", "de": "train", "zh-CN": "train",
                                 "de-CH": "zero-shot-variant", "zh-TW": "zero-shot-variant", "sw": "zero-shot"}
