"""Anchor augmentation (issue 11, item 3): code-switched and noisy copies of the labelled training queries,
seeded, never in dev, refused for passage KBs; ``--augment`` in the CLI."""

from __future__ import annotations

import json
import random
import re

import pytest
from typer.testing import CliRunner

from mlret_rag.cli import app
from mlret_rag.demo import demo_train_questions_path, load_demo_kb
from mlret_rag.finetune import Anchor, augmented_anchors, finetune, read_card
from mlret_rag.finetune.augment import code_switched, noisy
from mlret_rag.kb import KBRecord, QueryRecord, load_queries

INDEX_TEXTS = ["turn on the kitchen lights", "what is the weather today", "set a timer for ten minutes"]
INDEX_LABELS = [0, 1, 2]
ANCHORS = [Anchor("mach bitte das licht in der küche an", 0, "de", "q1"),
           Anchor("wie wird das wetter heute", 1, "de", "q2"),
           Anchor("タイマーを十分にセットして", 2, "ja", "q3"),
           Anchor("pon un temporizador de diez minutos", 2, "es", "q4")] * 5


def test_code_switching_replaces_a_third_of_the_words_by_the_same_stretch_of_the_source():
    words = ["eins", "zwei", "drei", "vier", "fünf", "sechs"]
    source = ["one", "two", "three", "four", "five", "six"]
    for seed in range(20):
        mixed = code_switched(" ".join(words), " ".join(source), random.Random(seed)).split()
        assert len(mixed) == 6
        switched = [i for i, (w, m) in enumerate(zip(words, mixed)) if w != m]
        assert len(switched) == 2 and switched[1] == switched[0] + 1  # one stretch of 6 // 3 words
        assert all(mixed[i] == source[i] for i in switched)  # same relative position: same words here


def test_unspaced_text_is_switched_by_characters_and_keeps_the_borrowed_words_apart():
    text = "タイマーを十分にセット"  # 11 characters: 3 switched
    source = ["set", "a", "timer", "for", "ten", "minutes", "now", "please", "thank", "you", "kindly"]  # 11 words: same positions
    for seed in range(10):
        mixed = code_switched(text, " ".join(source), random.Random(seed))
        borrowed = re.findall(r"[a-z]+", mixed)
        assert len(borrowed) == 3 and " ".join(borrowed) in " ".join(source)
        at = mixed.index(borrowed[0])
        assert mixed[:at] == text[:at] and mixed.endswith(text[at + 3:])


def test_noise_drops_doubles_or_swaps_about_the_rate_and_never_empties_a_text():
    text = "wie wird das wetter morgen in zürich " * 10
    assert noisy(text, random.Random(0), rate=0.0) == text.strip()
    changed = noisy(text, random.Random(1))
    assert changed != text.strip() and abs(len(changed) - len(text)) < 0.1 * len(text)
    dropping = next(s for s in range(100) if random.Random(s).random() < 1 / 3)  # the only character is dropped
    assert noisy("a", random.Random(dropping), rate=1.0) == "a"


def test_every_anchor_gets_one_seeded_copy_with_its_label_language_and_source():
    out = augmented_anchors(ANCHORS, INDEX_TEXTS, INDEX_LABELS, seed=0)
    assert out[: len(ANCHORS)] == ANCHORS and len(out) == 2 * len(ANCHORS)
    copies = out[len(ANCHORS):]
    for original, copy in zip(ANCHORS, copies):
        assert (copy.label_id, copy.lang, copy.source_id) == (original.label_id, original.lang, original.source_id)
        assert copy.text.strip()
    assert sum(c.text != a.text for a, c in zip(ANCHORS, copies)) >= len(ANCHORS) // 2
    # code-switched copies carry words of their own label's index text, never another label's
    for original, copy in zip(ANCHORS, copies):
        for label, text in zip(INDEX_LABELS, INDEX_TEXTS):
            borrowed = set(copy.text.split()) & set(text.split()) - set(original.text.split())
            assert label == original.label_id or not borrowed
    assert augmented_anchors(ANCHORS, INDEX_TEXTS, INDEX_LABELS, seed=0) == out
    assert augmented_anchors(ANCHORS, INDEX_TEXTS, INDEX_LABELS, seed=1) != out


def test_augment_is_refused_for_passage_kbs_before_a_model_loads(tmp_path):
    kb = [KBRecord(id=f"p{i}", text=f"passage number {i} about topic {i}") for i in range(6)]
    queries = [QueryRecord(f"frage {i}", lang="de", relevant_ids=(f"p{i}",)) for i in range(6)]
    with pytest.raises(ValueError, match="augment=True .* intent KBs only"):
        finetune(kb, queries, out=tmp_path / "never", augment=True, dev_share=0)
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_cli_augment_trains_on_one_copy_per_training_anchor_and_keeps_dev_untouched(tmp_path):
    kb = tmp_path / "kb.jsonl"
    kb.write_text("".join(json.dumps({"id": r.id, "text": r.text, "label": r.label, "lang": r.lang}) + "\n"
                          for r in load_demo_kb()), encoding="utf-8")
    train = load_queries(demo_train_questions_path())
    common = ["finetune", "--kb", str(kb), "--queries", str(demo_train_questions_path()), "--max-steps", "1",
              "--batch-size", "16", "--dev-share", "0.3", "--quiet"]
    plain = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "plain")])
    res = CliRunner().invoke(app, [*common, "--augment", "--out", str(tmp_path / "aug")])
    assert plain.exit_code == 0 and res.exit_code == 0, res.output
    card, plain_card = read_card(tmp_path / "aug"), read_card(tmp_path / "plain")
    dev = plain_card["data"]["dev_queries"]
    assert 0 < dev == card["data"]["dev_queries"]  # the split is made before copies exist
    trained = len(train) - dev
    assert card["data"]["augmented_anchors"] == trained and card["data"]["anchors"] == 2 * trained
    assert card["sampling"]["augment"] is True and plain_card["sampling"]["augment"] is False
    assert f"{trained} of the {2 * trained} labelled anchors are synthetic copies (--augment)" in res.output
    assert "synthetic copies" not in plain.output
