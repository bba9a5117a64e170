"""``mlret eval`` end to end with the bundled model on a tiny KB and query file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlret_rag.cli import app

KEYS = {"mrr", "hit@1", "hit@3", "hit@10", "ndcg@10", "n_queries"}


@pytest.fixture()
def files(tmp_path):
    kb = [
        {"id": "t1", "text": "Set a timer for ten minutes", "label": "timer"},
        {"id": "t2", "text": "Start a countdown", "label": "timer"},
        {"id": "l1", "text": "Turn on the kitchen lights", "label": "lights_on"},
        {"id": "l2", "text": "Switch the lamp on", "label": "lights_on"},
        {"id": "w1", "text": "What is the weather today?", "label": "weather"},
    ]
    queries = [
        {"text": "Stelle einen Timer auf zehn Minuten", "label": "timer", "lang": "de"},
        {"text": "Mach das Licht in der Küche an", "label": "lights_on", "lang": "de"},
        {"text": "Quel temps fait-il aujourd'hui ?", "label": "weather", "lang": "fr"},
        {"text": "Switch the lamp on", "relevant_ids": ["l2"]},
    ]
    kb_file, q_file = tmp_path / "kb.jsonl", tmp_path / "q.jsonl"
    kb_file.write_text("\n".join(json.dumps(r) for r in kb) + "\n", encoding="utf-8")
    q_file.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in queries) + "\n", encoding="utf-8")
    return kb_file, q_file


def test_mlret_eval_prints_a_table_and_writes_the_json(files, tmp_path):
    kb_file, q_file = files
    out = tmp_path / "reports" / "r.json"
    result = CliRunner().invoke(app, ["eval", "--kb", str(kb_file), "--queries", str(q_file),
                                      "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "| **overall** | 4 |" in result.stdout and "| de | 2 |" in result.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {"model", "overall", "per_language"}
    assert report["model"] == "multilingual-e5-small" or "e5" in report["model"]
    assert set(report["overall"]) == KEYS and report["overall"]["n_queries"] == 4
    assert set(report["per_language"]) == {"de", "fr", "unknown"}
    assert all(set(m) == KEYS for m in report["per_language"].values())
    assert report["per_language"]["unknown"]["mrr"] == 1.0
    assert report["overall"]["hit@10"] == 1.0  # five KB records: everything relevant is in the top 10
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temporary file left behind
    assert out.stat().st_mode & 0o044 == 0o044  # readable by others, not the 0600 of a temporary file


def test_mlret_eval_names_the_bad_line_and_writes_nothing(files, tmp_path):
    kb_file, _ = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": "timer"}\n{"text": ""}\n', encoding="utf-8")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["eval", "--kb", str(kb_file), "--queries", str(bad), "--json", str(out)])
    assert result.exit_code == 1
    assert f"error: {bad}:2:" in result.stderr and "empty" in result.stderr
    assert not out.exists()


def test_mlret_eval_refuses_queries_without_label_or_ids(files, tmp_path):
    kb_file, _ = files
    q = tmp_path / "q.jsonl"
    q.write_text('{"text": "hello"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "--kb", str(kb_file), "--queries", str(q), "--quiet"])
    assert result.exit_code == 1 and "neither" in result.stderr
