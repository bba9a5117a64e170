"""The schedule chosen on dev data, on real training of the bundled model: the best epoch's weights are what
is saved, training stops when dev stops improving, the CLI prints the dev curve and the language guard, and
passage knowledge bases train from ``relevant_ids``. A run that would exceed memory stops before training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from mlret_rag import MultilingualEncoder, evaluate
from mlret_rag.demo import demo_train_questions_path, load_demo_kb, load_demo_questions
from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.finetune import TrainingMemoryError, dev_score, finetune, read_card
from mlret_rag.kb import QueryRecord, load_queries

pytestmark = pytest.mark.slow
QUICK = {"batch_size": 16, "seed": 0, "show_progress_bar": False}


def test_the_saved_weights_are_the_best_dev_epoch(tmp_path):
    kb, dev = load_demo_kb(), load_demo_questions()
    result = finetune(kb, load_queries(demo_train_questions_path()), out=tmp_path / "m", dev_queries=dev,
                      epochs=2, patience=2, learning_rate=1e-4, interpolate=True, **QUICK)
    sel = result.selection
    scores = [p["dev_score"] for p in sel["curve"]]
    assert [p["epoch"] for p in sel["curve"]] == [0, 1, 2] and sel["stopped"] == "epochs"
    assert sel["chosen_epoch"] == int(np.argmax(scores)) > 0
    mixes = sel["interpolation"]["dev_score_by_alpha"]
    assert set(mixes) == {"0.25", "0.5", "0.75", "1.0"} and mixes["1.0"] == pytest.approx(max(scores))
    assert sel["chosen_dev_score"] == pytest.approx(max(mixes.values()))
    reloaded = dev_score(evaluate(MultilingualEncoder(result.out, backend="torch"), kb, dev))
    assert reloaded == pytest.approx(sel["chosen_dev_score"], abs=2e-4)  # what was chosen, not the last epoch
    assert set(sel["dev_languages"]) == {q.lang for q in dev}
    card = read_card(result.out)
    assert card["selection"]["curve"] == sel["curve"] and "your dev queries (27)" in card["selection"]["on"]
    assert "## Schedule chosen on dev data" in (result.out / "README.md").read_text()


def test_training_stops_when_dev_gets_worse_and_keeps_the_base_weights(tmp_path, torch_encoder):
    kb = load_demo_kb()
    labels = sorted({r.label for r in kb})
    rotate = {lab: labels[(i + 1) % len(labels)] for i, lab in enumerate(labels)}
    # dev asks for the *wrong* label, so every step that learns the right one makes dev worse
    wrong_dev = [QueryRecord(q.text, rotate[q.label], q.lang) for q in load_demo_questions()]
    result = finetune(kb, load_queries(demo_train_questions_path()), out=tmp_path / "m", dev_queries=wrong_dev,
                      epochs=4, patience=1, learning_rate=1e-4, **QUICK)
    sel = result.selection
    assert sel["chosen_epoch"] == 0 and sel["epochs_run"] == 1 and sel["stopped"].startswith("patience")
    texts = ["Wo ist meine Bestellung?", "passage: reset your password"]
    kept = MultilingualEncoder(result.out, backend="torch").encode_queries(texts)
    assert np.allclose(kept, torch_encoder.encode_queries(texts), atol=1e-5)


def test_a_small_dev_split_is_an_error_only_when_asked_for(tmp_path, caplog):
    kb, queries = load_demo_kb(), load_queries(demo_train_questions_path())
    with pytest.raises(KnowledgeBaseError, match="dev split is too small"):
        finetune(kb, queries, out=tmp_path / "a", dev_share=0.1, **QUICK)
    auto = finetune(kb, queries, out=tmp_path / "b", max_steps=1, **QUICK)  # 60 queries: 9 dev, too few
    assert auto.selection["on"] is None and "too few" in auto.selection["note"]
    assert "no dev split" in caplog.text


def test_a_run_that_cannot_fit_in_memory_fails_before_training(tmp_path):
    with pytest.raises(TrainingMemoryError, match=r"would need about [\d.]+ GB.*lower --batch-size, --max-seq-length"):
        finetune(load_demo_kb(), load_queries(demo_train_questions_path()), out=tmp_path / "m",
                 batch_size=200_000, show_progress_bar=False)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_cached_documents_train_a_passage_kb_with_a_smaller_memory_estimate(tmp_path):
    from mlret_rag.datasets import build_passage_benchmark

    bench = build_passage_benchmark(n_passages=20, train_languages=("es",), test_languages=("en",))
    options = {"max_steps": 2, "dev_share": 0, "show_progress_bar": False, "frozen_layers": 0}
    trained = finetune(bench.kb, bench.train_queries, out=tmp_path / "trained", **options)
    cached = finetune(bench.kb, bench.train_queries, out=tmp_path / "cached", document_embeddings="cached", **options)
    assert cached.config.document_embeddings == "cached" and trained.config.document_embeddings == "trained"
    assert read_card(tmp_path / "cached")["configuration"]["schedule"]["document_embeddings"] == "cached"
    # only the anchors keep activations for the backward: far less than the 16 passage rows of a step
    assert cached.estimated_peak_gb < trained.estimated_peak_gb - 1.5
    assert math.isfinite(cached.train_loss) and cached.selection["steps"] == 2


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_trains_a_passage_kb_from_relevant_ids_and_prints_the_dev_curve(tmp_path):
    from mlret_rag.cli import app
    from mlret_rag.datasets import build_passage_benchmark

    bench = build_passage_benchmark(n_passages=20, train_languages=("es", "de"), test_languages=("en", "es", "fr"))
    kb = _write(tmp_path / "kb.jsonl", [{"id": r.id, "text": r.text, "lang": r.lang, "metadata": r.metadata}
                                        for r in bench.kb])
    rows = [{"text": q.text, "lang": q.lang, "relevant_ids": list(q.relevant_ids), "source_id": q.source_id}
            for q in bench.train_queries]
    rows.append({"text": "a question about a passage that is gone", "relevant_ids": ["no-such-passage"]})
    queries = _write(tmp_path / "q.jsonl", rows)
    dev = _write(tmp_path / "dev.jsonl", [{"text": q.text, "lang": q.lang, "relevant_ids": list(q.relevant_ids)}
                                          for q in bench.test_queries])
    out = tmp_path / "tuned"
    res = CliRunner().invoke(app, ["finetune", "--kb", str(kb), "--queries", str(queries), "--dev", str(dev),
                                   "--out", str(out), "--epochs", "2", "--max-seq-length", "128",
                                   "--negatives", "hard", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "fine-tuned on 40 anchors (20 passages" in res.output
    assert "1 relevant_ids entries not in the KB" in res.output
    assert "dev curve: base " in res.output and "epoch 1 " in res.output and "kept " in res.output
    card = read_card(out)
    if card["selection"]["guard"]:
        assert "WARNING: dev languages losing more than 2 MRR points" in res.output
        assert all(f"{g['lang']} {g['delta']:+.3f} ({g['n_queries']} queries)" in res.output
                   for g in card["selection"]["guard"])
    else:
        assert "language guard: no dev language loses more than 2 MRR points" in res.output
    assert card["data"]["relevance"].startswith("relevant_ids") and card["sampling"]["negatives_per_anchor"] == 1
    assert card["training"]["max_seq_length"] == 128 and card["training"]["batch_size"] == 8
    assert MultilingualEncoder(out, backend="torch").max_seq_length == 512  # the training cap is not saved
    res = CliRunner().invoke(app, ["finetune", "--kb", str(kb), "--queries", str(queries), "--out",
                                   str(tmp_path / "huge"), "--batch-size", "200000", "--quiet"])
    assert res.exit_code == 1 and "error: this fine-tune would need about" in res.output
