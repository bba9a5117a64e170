"""Self-training from unlabelled questions, on real training of the bundled model: the CLI with and without
labelled queries, intent and passage KBs, pseudo-labels kept out of dev, seeded reproducibility, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mlret_rag import KnowledgeBaseError, MultilingualEncoder
from mlret_rag.cli import app
from mlret_rag.demo import demo_questions_path, demo_train_questions_path, load_demo_kb, load_demo_questions
from mlret_rag.finetune import finetune, read_card
from mlret_rag.kb import QueryRecord, load_queries

pytestmark = pytest.mark.slow
QUICK = {"batch_size": 16, "show_progress_bar": False}


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _demo_kb_file(tmp_path):
    return _write(tmp_path / "kb.jsonl", [{"id": r.id, "text": r.text, "label": r.label, "lang": r.lang}
                                          for r in load_demo_kb()])


def test_cli_trains_from_the_kb_and_unlabelled_questions_alone(tmp_path):
    kb = _demo_kb_file(tmp_path)
    train = load_queries(demo_train_questions_path())
    # logs as exported with whatever labels somebody once added: those are ignored, and the output says so
    pool = _write(tmp_path / "logs.jsonl", [{"text": q.text, "lang": q.lang, "label": q.label} for q in train])
    out = tmp_path / "tuned"
    res = CliRunner().invoke(app, ["finetune", "--kb", str(kb), "--unlabelled", str(pool), "--dev",
                                   str(demo_questions_path()), "--out", str(out), "--epochs", "1", "--batch-size",
                                   "16", "--pseudo-label-precision", "0.9", "--no-pseudo-label-propagation", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "unlabelled questions: 60 used of 60 (sw 12, hi-Latn 12" in res.output
    assert "; the labels of 60 rows ignored" in res.output
    card = read_card(out)
    (round_,) = card["selection"]["pseudo_labels"]
    assert f"epoch 1 pseudo-labels: {round_['cleared']} new above margin" in res.output
    assert round_["dev_precision"] >= 0.9 and round_["cleared"] == round_["labelled"] == round_["used"] > 0
    assert round_["voters"] is None  # the training queries do not vote by default
    # --no-pseudo-label-propagation: labels spread to no question below the threshold, and nothing says they do
    assert card["training"]["pseudo_label_propagation"] is False and "propagated" not in round_
    assert "labels also propagate" not in res.output
    bound = round_["precision_lower_bound"]
    assert 0 < bound < round_["dev_precision"] and f"at least {bound:.2f})" in res.output
    assert card["training"]["pseudo_label_precision"] == 0.9
    assert card["training"]["pseudo_labels_frozen_layers"] == 0  # pseudo-labels train every layer by default
    assert card["data"]["anchors_per_language"] == {"en": 22}  # the labelled anchors: the KB's training rows
    assert card["data"]["examples"] == 22 + round_["used"]
    readme = (out / "README.md").read_text()
    assert "## Pseudo-labelled questions (self-training)" in readme and f"| {bound:.4g} |" in readme


@pytest.mark.parametrize(("augment", "labelling_epochs", "agreement"), [(False, 1, True), (True, 2, False)])
def test_cli_can_set_the_threshold_on_training_languages_untrained_while_labels_are_given(
        tmp_path, augment, labelling_epochs, agreement):
    kb = _demo_kb_file(tmp_path)
    train = load_queries(demo_train_questions_path())
    queries = _write(tmp_path / "train.jsonl", [{"text": q.text, "label": q.label, "lang": q.lang} for q in train])
    pool = _write(tmp_path / "logs.jsonl", [{"text": q.text, "lang": q.lang} for q in load_queries(demo_questions_path())])
    out = tmp_path / "tuned"
    res = CliRunner().invoke(app, ["finetune", "--kb", str(kb), "--queries", str(queries), "--unlabelled", str(pool),
                                   "--out", str(out), "--epochs", "2", "--batch-size", "16",
                                   "--pseudo-label-precision", "0.5", "--calibration-languages", "3",
                                   "--labelling-epochs", str(labelling_epochs), "--quiet",
                                   *(["--augment", "--pseudo-labels-frozen-layers", "4", "--pseudo-label-propagation"]
                                     if augment else []),
                                   *(["--pseudo-label-agreement"] if agreement else [])])
    assert res.exit_code == 0, res.output
    card = read_card(out)
    copies = 2 if augment else 1  # a synthetic copy keeps its language: it sits out with its anchor
    assert card["data"].get("augmented_anchors", 0) == (copies - 1) * sum(card["data"]["anchors_per_language"].values())
    calibration = card["data"]["unlabelled"]["calibration"]
    langs = calibration["languages"]
    per_language = card["data"]["anchors_per_language"]
    assert len(langs) == 3 and calibration["queries"] == sum(per_language[lang] for lang in langs)
    assert calibration["labelling_epochs"] == labelling_epochs
    untrained = "before they train" if labelling_epochs == 1 else "which sit out the first epoch"
    assert (f"pseudo-label threshold set on the {calibration['queries']} training queries in {', '.join(langs)}, "
            f"{untrained}") in res.output
    first, second = card["selection"]["pseudo_labels"]
    assert first["labelling"] and first["calibrated_on"] == langs and first["threshold"] is not None
    # with --pseudo-label-agreement the training queries outside the calibration languages vote on each label
    voting = sum(n for lang, n in per_language.items() if lang not in langs)
    assert first["voters"] == (voting if agreement else None)
    assert (f"a pseudo-label also needs the {voting} training queries nearest to the question to agree"
            in res.output) == agreement
    assert (f"The {voting} labelled training queries vote too" in (out / "README.md").read_text()) == agreement
    if labelling_epochs == 1:  # the base model gave every label, before the first epoch trained them all
        assert not second["labelling"] and second["cleared"] == 0 and second["labelled"] == first["labelled"]
        assert "epoch 2 pseudo-labels: no new one (labelling epochs over)" in res.output
        assert card["data"]["examples"] == card["data"]["anchors"] + first["used"]
    else:  # the first epoch trained without the calibration languages' queries (nor their copies, which never calibrate)
        assert second["labelling"] and second["threshold"] is not None
        assert card["data"]["examples"] == card["data"]["anchors"] - copies * calibration["queries"] + first["used"]
    assert card["data"]["anchors_without_positive"] == 0
    assert card["training"]["pseudo_labels_frozen_layers"] == (4 if augment else 0)
    # an intent KB's labels propagate by default, beside the agreement too, and are reported per labelling epoch
    # (the demo's few calibration queries may set no margin for it)
    assert card["training"]["pseudo_label_propagation"] is True and "propagated" in first
    assert "labels also propagate to a question" in res.output
    assert "Labels also propagate" in (out / "README.md").read_text()
    # the learning rate decays to 0 at the last step, though the first epoch's size was only known once labelled
    assert card["selection"]["last_learning_rate"] == 0.0
    assert (f"chosen for the precision target on the {calibration['queries']} training queries in {', '.join(langs)}"
            in (out / "README.md").read_text())


def test_by_default_every_training_language_calibrates_and_with_agreement_only_a_quarter(tmp_path):
    kb, train = load_demo_kb(), load_queries(demo_train_questions_path())
    pool = [QueryRecord(q.text, lang=q.lang) for q in load_queries(demo_questions_path())]
    languages = sorted({q.lang for q in train})
    default = finetune(kb, train, out=tmp_path / "default", unlabelled=pool, max_steps=2, **QUICK)
    calibration = default.stats["unlabelled"]["calibration"]
    assert calibration == {"languages": languages, "queries": len(train), "labelling_epochs": 1}
    assert default.selection["pseudo_labels"][0]["calibrated_on"] == languages
    # an intent KB's labels also propagate by default (the demo's few calibration queries may set no margin)
    assert default.config.pseudo_label_propagation is True and "propagated" in default.selection["pseudo_labels"][0]
    # ... but not among questions that name no language: they would all count as one
    unnamed = finetune(kb, train, out=tmp_path / "unnamed", unlabelled=[QueryRecord(q.text) for q in pool],
                       max_steps=1, **QUICK)
    assert unnamed.config.pseudo_label_propagation is False and "propagated" not in unnamed.selection["pseudo_labels"][0]
    # the agreement's voters are the other languages' queries: a quarter calibrates (1 of 7, 12 queries at most:
    # too few, and 60 are too few for a dev split)
    with pytest.raises(KnowledgeBaseError, match="unlabelled questions need dev queries"):
        finetune(kb, train, out=tmp_path / "agreed", unlabelled=pool, pseudo_label_agreement=True, max_steps=2, **QUICK)


def test_cli_names_bad_unlabelled_input_before_loading_a_model(tmp_path):
    kb = _demo_kb_file(tmp_path)
    runner = CliRunner()

    def run(pool, *extra):
        return runner.invoke(app, ["finetune", "--kb", str(kb), "--unlabelled", str(pool), "--out",
                                   str(tmp_path / "m"), "--quiet", *extra])

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = run(empty, "--dev", str(demo_questions_path()))
    assert res.exit_code == 1 and "empty.jsonl: no records (the query file is empty)" in res.output
    not_text = _write(tmp_path / "bad.jsonl", [{"text": "wo isch mis Päckli?"}, {"text": 42, "lang": "de-CH"}])
    res = run(not_text, "--dev", str(demo_questions_path()))
    assert res.exit_code == 1 and "bad.jsonl:2" in res.output and "text" in res.output
    fine = _write(tmp_path / "fine.jsonl", [{"text": "wo isch mis Päckli?", "lang": "de-CH"}])
    res = run(fine)  # the KB's 22 training rows give no dev split of 20+
    assert res.exit_code == 1 and "unlabelled questions need dev queries" in res.output
    res = run(fine, "--dev", str(demo_questions_path()), "--dev-share", "0.3")
    assert res.exit_code == 1 and "not both" in res.output
    assert not (tmp_path / "m").exists()


def test_pseudo_labels_never_serve_as_dev_and_a_seed_fixes_the_run(tmp_path):
    kb, dev = load_demo_kb(), load_demo_questions()
    pool = [QueryRecord(q.text, lang=q.lang) for q in load_queries(demo_train_questions_path())]
    pool.append(QueryRecord(dev[0].text.upper(), lang=dev[0].lang))  # a dev question turning up in the logs
    runs = [finetune(kb, None, out=tmp_path / f"m{i}", unlabelled=pool, dev_queries=dev, max_steps=2, seed=5,
                     **QUICK) for i in range(2)]
    assert runs[0].stats["unlabelled"]["also_labelled_dropped"] == 1
    kept = {text.casefold() for epoch in runs[0].pseudo_labels for text, _ in epoch}
    assert dev[0].text.casefold() not in kept
    assert runs[0].selection["dev_languages"] == {lang: sum(q.lang == lang for q in dev) for lang in {q.lang for q in dev}}
    timing = "seconds_per_step"
    assert runs[0].pseudo_labels == runs[1].pseudo_labels
    assert {k: v for k, v in runs[0].selection.items() if k != timing} == {
        k: v for k, v in runs[1].selection.items() if k != timing}
    texts = ["Wo isch mis Päckli?", "passage: reset your password"]
    a, b = (MultilingualEncoder(r.out, backend="torch").encode_queries(texts) for r in runs)
    assert np.allclose(a, b, atol=1e-6)


def test_passage_kbs_pseudo_label_with_the_best_passage_and_unreadable_text_is_left_out(tmp_path, caplog):
    from mlret_rag.datasets import build_passage_benchmark

    bench = build_passage_benchmark(n_passages=20, train_languages=("es", "de"), test_languages=("es", "fr"))
    dev = [q for q in bench.test_queries if q.lang == "es"]
    french = [q for q in bench.test_queries if q.lang == "fr"]
    runes = [QueryRecord("ᚠᚢᚦᚨ ᚱᚲ" + "ᚨ" * i, lang="runic") for i in range(5)]
    pool = [QueryRecord(q.text, lang="fr") for q in french] + runes
    with caplog.at_level("WARNING"):
        result = finetune(bench.kb, bench.train_queries, out=tmp_path / "m", dev_queries=dev, unlabelled=pool,
                          epochs=1, max_seq_length=128, pseudo_label_precision=0.6, pseudo_label_agreement=True,
                          pseudo_label_propagation=True, **QUICK)
    assert "pseudo_label_agreement applies to intent KBs" in caplog.text
    stats = result.stats["unlabelled"]
    assert stats["unreadable_dropped"] == {"runic": 5} and stats["per_language"] == {"fr": len(french)}
    (kept,) = result.pseudo_labels
    (report,) = result.selection["pseudo_labels"]
    ids = {r.id for r in bench.kb}
    assert len(kept) == report["used"] and all(pid in ids for _, pid in kept)
    assert report["voters"] is None  # a passage has too few training queries to vote on it
    assert "propagated" in report and report["propagated"] <= report["cleared"]  # passages may propagate too
    truth = {q.text: set(q.relevant_ids) for q in french}
    if kept:  # the threshold is set on dev; whatever clears it must mostly be right
        assert sum(pid in truth[text] for text, pid in kept) / len(kept) >= 0.5
