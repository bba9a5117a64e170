"""FinetuneConfig (issue 13, item 4): every fine-tune option in one value, validated once, written into the
card so that a run can be repeated from it; ``finetune(**overrides)`` and the CLI keep their keywords and defaults."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from mlret_rag import FinetuneConfig, finetune
from mlret_rag.cli import app
from mlret_rag.finetune import read_card
from mlret_rag.kb import KBRecord, QueryRecord

KB = [KBRecord(id=f"{label}-{i}", text=text, label=label, lang="en")
      for label, texts in {"weather": ["what's the weather like", "will it rain today"],
                           "lights": ["turn on the lights", "switch the lamp on"],
                           "timer": ["set a timer", "start a timer for five minutes"]}.items()
      for i, text in enumerate(texts)]
QUERIES = [QueryRecord("wie wird das Wetter", "weather", "de"), QueryRecord("mach das Licht an", "lights", "de"),
           QueryRecord("stelle einen Timer", "timer", "de"), QueryRecord("va a llover hoy", "weather", "es"),
           QueryRecord("enciende la luz", "lights", "es"), QueryRecord("pon un temporizador", "timer", "es")]


def test_sections_hold_every_option_once_and_round_trip():
    config = FinetuneConfig(epochs=3, negatives="hard", translate_to=["de", "fr"], dev_share=0)
    sections = config.to_dict()
    assert list(sections) == ["sampling", "schedule", "output"]
    names = [name for section in sections.values() for name in section]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(FinetuneConfig))
    assert sections["sampling"]["negatives"] == "hard" and sections["schedule"]["epochs"] == 3
    assert sections["sampling"]["translate_to"] == ["de", "fr"] and config.translate_to == ("de", "fr")
    assert FinetuneConfig.from_dict(sections) == config
    assert FinetuneConfig.from_dict({"epochs": 3, "negatives": "hard", "translate_to": ["de", "fr"],
                                     "dev_share": 0}) == config


@pytest.mark.parametrize(("options", "message"), [
    ({"negatives": "random"}, "negatives must be one of standard, weighted, hard; got 'random'"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"epochs": True}, "epochs must be an integer >= 1"),
    ({"learning_rate": -1e-5}, "learning_rate must be a positive number"),
    ({"warmup_ratio": 1.0}, r"warmup_ratio must be a number in \[0, 1\)"),
    ({"dev_share": 1.5}, "dev_share must be None"),
    ({"batch_size": 1}, "batch_size must be an integer >= 2"),
    ({"similarity": "cosine"}, "similarity must be one of"),
    ({"hardness_mode": "all"}, "hardness_mode must be one of"),
    ({"max_seq_length": 4}, "max_seq_length must be an integer >= 8"),
    ({"calibration_languages": -1}, "calibration_languages must be an integer >= 0 or None"),
    ({"labelling_epochs": 0}, "labelling_epochs must be a positive integer or None"),
    ({"pseudo_label_precision": 1.0}, "pseudo_label_precision must be a number strictly between 0 and 1"),
    ({"false_negative_share": 0}, r"false_negative_share must be a number in \(0, 1\]"),
    ({"train_ratio": 0}, "train_ratio must be a number strictly between 0 and 1"),
    ({"overwrite": "yes"}, "overwrite must be True or False"),
    ({"augment": 1}, "augment must be True or False"),
    ({"pseudo_label_propagation": "on"}, r"pseudo_label_propagation must be True, False or None \(auto\)"),
    ({"group_by": ""}, "group_by must be a metadata key"),
    ({"document_embeddings": "frozen"}, "document_embeddings must be one of trained, constant, cached"),
])
def test_a_bad_option_is_refused_naming_it(options, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**options)
    with pytest.raises(ValueError, match=message):  # replace() validates again
        FinetuneConfig().replace(**options)


def test_an_unknown_option_is_a_type_error_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="unknown fine-tune option.*'epoch'.*epochs"):
        finetune(KB, QUERIES, out=tmp_path / "never", epoch=2)
    with pytest.raises(TypeError, match="config must be a FinetuneConfig"):
        finetune(KB, QUERIES, out=tmp_path / "never", config=3)
    with pytest.raises(ValueError, match="epochs must be"):
        finetune(KB, QUERIES, out=tmp_path / "never", config=FinetuneConfig(), epochs=0)
    assert not (tmp_path / "never").exists()


def test_the_cli_defaults_are_the_config_defaults():
    command = next(c for c in typer.main.get_command(app).commands.values() if c.name == "finetune")
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    checked = 0
    for param in command.params:
        if param.name in defaults and param.name not in ("show_progress_bar", "translate_to"):
            assert param.default == defaults[param.name], param.name
            checked += 1
    assert checked >= 20  # the CLI exposes (nearly) every option


@pytest.mark.slow
def test_the_card_records_the_options_as_run_and_repeats_the_run(tmp_path):
    config = FinetuneConfig(batch_size=4, max_steps=1, dev_share=0, show_progress_bar=False)
    result = finetune(KB, QUERIES, out=tmp_path / "a", config=config, negatives_per_anchor=2)
    assert result.config == config.replace(negatives_per_anchor=2, frozen_layers=0,  # nothing left to "chosen from the data"
                                            pseudo_label_propagation=True)  # an intent KB's default
    card = read_card(tmp_path / "a")
    assert card["configuration"] == result.config.to_dict()
    assert card["sampling"]["negatives_per_anchor"] == 2 and card["training"]["batch_size"] == 4
    assert card["sampling"]["false_negative_share"] is None and card["training"]["pseudo_label_precision"] is None
    assert card["training"]["pseudo_labels_frozen_layers"] is None  # no unlabelled questions: not used

    again = finetune(KB, QUERIES, out=tmp_path / "b", config=card["configuration"])  # a mapping works too
    assert again.config == result.config and again.train_loss == pytest.approx(result.train_loss, rel=1e-6)


def test_options_that_do_not_fit_the_inputs_are_refused_before_a_model_loads(tmp_path):
    with pytest.raises(ValueError, match="similarity='anchor' .* does not combine with unlabelled questions"):
        finetune(KB, QUERIES, out=tmp_path / "never", similarity="anchor", unlabelled=[{"text": "wetter morgen?"}])
    with pytest.raises(ValueError, match="give dev_queries .* or dev_share .*, not both"):
        finetune(KB, QUERIES, out=tmp_path / "never", dev_queries=QUERIES, dev_share=0.2)
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_bf16_trains_in_bfloat16_autocast_and_saves_float32_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    options = {"batch_size": 4, "max_steps": 2, "dev_share": 0, "show_progress_bar": False}
    full = finetune(KB, QUERIES, out=tmp_path / "fp32", **options)
    half = finetune(KB, QUERIES, out=tmp_path / "bf16", bf16=True, **options)
    assert half.config.bf16 and read_card(tmp_path / "bf16")["configuration"]["schedule"]["bf16"] is True
    # the same seeded batches, computed in bfloat16: close to the float32 loss, but not equal to it
    assert half.train_loss == pytest.approx(full.train_loss, rel=0.05)
    assert half.train_loss != pytest.approx(full.train_loss, rel=1e-4)
    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.float32}
