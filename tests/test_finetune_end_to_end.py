"""METHOD.md behaviour 7 and the bad-input contract: a tiny real fine-tune of the bundled model is reproducible
from its seed, saves a normal sentence-transformers folder with prompts and a model card, and reloads."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.finetune import OutputExistsError, finetune, prepare_training_data, read_card
from mlret_rag.kb import KBRecord, QueryRecord

INTENTS = {
    "weather": ["what's the weather like", "is it going to rain today", "weather forecast for tomorrow"],
    "lights_on": ["turn on the lights", "switch the lamp on", "lights on please"],
    "lights_off": ["turn off the lights", "switch the lamp off", "lights off please"],
    "timer": ["set a timer for five minutes", "start a timer", "timer for ten minutes"],
}
KB = [KBRecord(id=f"{lab}-{i}", text=t, label=lab, lang="en") for lab, ts in INTENTS.items() for i, t in enumerate(ts)]
QUERIES = [
    QueryRecord("wie wird das Wetter", "weather", "de", source_id="weather-0"),
    QueryRecord("mach das Licht an", "lights_on", "de"), QueryRecord("mach das Licht aus", "lights_off", "de"),
    QueryRecord("stelle einen Timer", "timer", "de"), QueryRecord("va a llover hoy", "weather", "es"),
    QueryRecord("enciende la luz", "lights_on", "es"), QueryRecord("apaga la luz", "lights_off", "es"),
    QueryRecord("pon un temporizador", "timer", "es"),
    QueryRecord("spiele Musik", "play_music", "de"),  # label not in the KB: counted, not silently dropped
]
pytestmark = pytest.mark.slow

SETTINGS = {"batch_size": 4, "max_steps": 2, "negatives_per_anchor": 2, "seed": 0, "show_progress_bar": False}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    first = finetune(KB, QUERIES, out=root / "a", **SETTINGS)
    second = finetune(KB, QUERIES, out=root / "b", **SETTINGS)
    yield first, second
    shutil.rmtree(root, ignore_errors=True)  # two saved models: freed now, not at the session's end


def test_reproducible_from_the_seed(tuned):
    from safetensors.torch import load_file

    first, second = tuned
    assert [(e.anchor, e.positive_id, e.negative_ids) for e in first.examples] == \
        [(e.anchor, e.positive_id, e.negative_ids) for e in second.examples]
    assert first.train_loss == pytest.approx(second.train_loss, abs=1e-6)
    a, b = load_file(first.out / "model.safetensors"), load_file(second.out / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_saved_folder_reloads_with_prompts_and_card(tuned, encoder):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from mlret_rag import MultilingualEncoder

    out = tuned[0].out
    plain = SentenceTransformer(str(out), device="cpu")
    assert plain.prompts["query"] == "query: " and plain.prompts["document"] == "passage: "
    mine = MultilingualEncoder(out)
    assert mine.prompts == encoder.prompts
    q = mine.encode_queries(["mach das Licht an"])
    assert q.shape == (1, encoder.dimension)
    assert not np.allclose(q, encoder.encode_queries(["mach das Licht an"]), atol=1e-6)  # weights moved
    card = read_card(out)
    assert card["data"]["queries_label_not_in_kb"] == 1 and card["data"]["unknown_labels"] == {"play_music": 1}
    assert card["data"]["anchors"] == 8 and card["data"]["anchors_per_language"] == {"de": 4, "es": 4}
    assert card["sampling"]["negatives"] == "weighted" and card["sampling"]["negatives_per_anchor"] == 2
    assert card["training"]["seed"] == 0 and card["training"]["freeze_embeddings"] is True
    assert card["training"]["frozen_layers"] == 0  # intent KBs train every layer by default
    assert "## Sampling" in (out / "README.md").read_text()


def test_non_empty_out_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        finetune(KB, QUERIES, out=tmp_path, **SETTINGS)
    assert (tmp_path / "keep.txt").exists()


def test_bad_input_is_a_clear_error():
    with pytest.raises(KnowledgeBaseError, match="no labels"):
        prepare_training_data([KBRecord(id="a", text="x")], QUERIES)
    with pytest.raises(KnowledgeBaseError, match="queries are empty"):
        prepare_training_data(KB, [])
    with pytest.raises(KnowledgeBaseError, match="no usable training anchor"):
        prepare_training_data(KB, [QueryRecord("x", "nope")])
    with pytest.raises(ValueError, match="negatives must be one of"):
        finetune(KB, QUERIES, out="/nonexistent/x", negatives="random")


def test_without_queries_the_kb_split_gives_anchors_and_a_translator_adds_languages():
    def shout(texts: list[str], lang: str) -> list[str]:  # a stand-in for a translation model
        return [f"[{lang}] {t.upper()}" for t in texts]

    data = prepare_training_data(KB, None, train_ratio=0.34, seed=1, translator=shout, translate_to=["xx", "yy"])
    base = [a for a in data.anchors if a.lang == "en"]
    assert base and len(data.anchors) == 3 * len(base)
    assert {a.source_id for a in base} == {a.source_id for a in data.anchors if a.lang == "xx"}
    assert not {a.source_id for a in base} & {r.id for r in data.index}
    with pytest.raises(ValueError, match="returned 0 texts"):
        prepare_training_data(KB, None, translator=lambda t, lang: [], translate_to=["xx"])


def test_chat_model_translator_wraps_an_invoke_model():
    from mlret_rag.finetune import chat_model_translator

    class FakeChat:  # a remote LLM cannot exist offline
        def invoke(self, prompt: str):
            return type("Msg", (), {"content": " " + prompt.rsplit("\n", 1)[-1][::-1] + " "})()

    assert chat_model_translator(FakeChat())(["abc", "de"], "fr") == ["cba", "ed"]


def test_hard_and_weighted_examples_from_the_model(encoder):
    from mlret_rag.finetune import EpochExamples

    data = prepare_training_data(KB, QUERIES)
    for strategy in ("hard", "weighted"):
        examples = EpochExamples(data, strategy, 2, 0.05, 0, None, "centroid", 0.95).examples(encoder, 0)
        for ex in examples:
            assert ex.label_id not in ex.negative_label_ids and len(ex.negatives) == 2
    hard = EpochExamples(data, "hard", 1, 0.05, 0, None, "centroid", 0.95).examples(encoder, 0)
    by_anchor = {e.anchor: e for e in hard}
    assert by_anchor["mach das Licht an"].negative_ids[0].startswith("lights_off")  # the confusable intent


def test_cli_refuses_non_empty_out_and_unlabelled_kb(tmp_path):
    from mlret_rag.cli import app

    kb = tmp_path / "kb.jsonl"
    kb.write_text("".join(json.dumps({"id": r.id, "text": r.text, "label": r.label}) + "\n" for r in KB))
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"text": x.text, "label": x.label, "lang": x.lang}) + "\n" for x in QUERIES))
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    runner = CliRunner()
    res = runner.invoke(app, ["finetune", "--kb", str(kb), "--queries", str(q), "--out", str(out), "--quiet"])
    assert res.exit_code == 1 and "not empty" in res.output and "--overwrite" in res.output
    bare = tmp_path / "bare.jsonl"
    bare.write_text('{"text": "no label here"}\n')
    res = runner.invoke(app, ["finetune", "--kb", str(bare), "--queries", str(q), "--out", str(tmp_path / "n")])
    assert res.exit_code == 1 and "no labels" in res.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = runner.invoke(app, ["finetune", "--kb", str(kb), "--queries", str(empty), "--out", str(tmp_path / "n")])
    assert res.exit_code == 1 and "empty" in res.output


def test_overwrite_never_replaces_a_folder_that_is_not_a_model(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(OutputExistsError, match="holds something other than a model"):
        finetune([{"text": "a", "label": "x"}], out=precious, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_training_applies_the_query_prompt_to_anchors_and_the_document_prompt_to_kb_columns():
    from mlret_rag.finetune.train import training_prompts

    columns = ["anchor", "positive", "negative_1", "negative_2", "label_ids"]
    got = training_prompts({"query": "query: ", "document": "passage: "}, columns)
    assert got == {"anchor": "query: ", "positive": "passage: ", "negative_1": "passage: ",
                   "negative_2": "passage: "}
    assert training_prompts({"query": "", "document": ""}, columns) == {}


def test_every_backend_runs_the_fine_tuned_folder(tuned, encoder):
    import numpy as np

    from mlret_rag import MultilingualEncoder

    out = tuned[0].out
    texts = ["mach das Licht an", "¿va a llover hoy?", "设置一个五分钟的计时器"]
    reference = MultilingualEncoder(out, backend="torch")
    assert not np.allclose(reference.encode_queries(texts), encoder.encode_queries(texts), atol=1e-4)
    for backend, floor in (("onnx", 0.9999), ("onnx-int8", 0.99)):
        other = MultilingualEncoder(out, backend=backend)
        assert other.fingerprint == reference.fingerprint  # one model, whatever the engine
        for mine, theirs in ((other.encode_queries(texts), reference.encode_queries(texts)),
                             (other.encode_documents(texts), reference.encode_documents(texts))):
            assert float(np.sum(mine * theirs, axis=1).min()) >= floor, backend


def test_no_progress_output_when_asked(tmp_path, capfd):
    finetune(KB, QUERIES, out=tmp_path / "quiet", **{**SETTINGS, "max_steps": 1})
    printed = "".join(capfd.readouterr())
    assert "train_runtime" not in printed and "Writing model shards" not in printed and "it/s" not in printed
