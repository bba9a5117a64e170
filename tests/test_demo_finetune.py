"""The fine-tune demo: a few steps on the demo KB, then base and tuned rows on the held-out demo questions."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mlret_rag.demo import demo_train_questions_path, load_demo_kb, load_demo_questions, run_finetune_demo


def test_training_questions_are_labelled_multilingual_and_disjoint_from_the_demo_questions():
    rows = [json.loads(line) for line in demo_train_questions_path().read_text(encoding="utf-8").splitlines()]
    held_out = {q.text.casefold() for q in load_demo_questions()}
    assert not {r["text"].casefold() for r in rows} & held_out
    assert {r["label"] for r in rows} == {r.label for r in load_demo_kb()}
    assert {"sw", "hi-Latn"} <= {r["lang"] for r in rows}


def test_finetune_demo_reports_base_and_tuned_rows(tmp_path, capsys):
    result = run_finetune_demo(max_steps=2, out=tmp_path / "tuned", print_table=True)
    assert [row["model"] for row in result.rows] == ["base", "tuned"]
    langs = {q.lang for q in load_demo_questions()}
    for row in result.rows:
        assert 0.0 <= row["hit@1"] <= row["mrr"] + 1e-9 <= 1.0 + 1e-9
        assert {f"mrr_{lang}" for lang in langs} <= set(row)
    assert result.reports["tuned"]["overall"]["n_queries"] == len(load_demo_questions())
    assert (result.model_dir / "mlret_card.json").is_file()
    printed = capsys.readouterr().out
    assert "base" in printed and "tuned" in printed and "sw" in printed


def test_cli_demo_without_finetune_only_answers_the_questions():
    from mlret_rag.cli import app

    result = CliRunner().invoke(app, ["demo", "--no-finetune", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "questions matched the expected label" in result.output
    assert "fine-tune demo" not in result.output
