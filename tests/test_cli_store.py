"""``mlret index`` / ``mlret query``: JSON round trip, idempotent re-runs, one-line errors."""

from __future__ import annotations

import json

import pytest
from chroma_server import free_port
from typer.testing import CliRunner

from mlret_rag.cli import app

KB = [
    {"id": "pw", "text": "How do I reset my password? Use 'Forgot password' on the sign-in page.",
     "label": "password_reset", "lang": "en", "metadata": {"section": "account"}},
    {"id": "ship", "text": "Where is my parcel? Track it under 'My orders'.", "label": "track_order"},
    {"id": "ret", "text": "How do I return an item? Print the prepaid return label.", "label": "return_item"},
]


@pytest.fixture
def kb_file(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in KB) + "\n", encoding="utf-8")
    return path


def mlret(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in err


def test_index_then_query_json_round_trip(kb_file, tmp_path):
    db = tmp_path / "db"
    first = mlret("index", "--kb", str(kb_file), "--db", str(db), "--quiet")
    assert first.exit_code == 0, first.output
    assert "encoded 3 (added 3, updated 0), unchanged 0; 3 stored" in first.stdout
    again = mlret("index", "--kb", str(kb_file), "--db", str(db), "--quiet")
    assert "encoded 0 (added 0, updated 0), unchanged 3; 3 stored" in again.stdout

    result = mlret("query", "¿Cómo restablezco mi contraseña?", "--db", str(db), "--json", "-k", "2")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"query", "hits"} and payload["query"] == "¿Cómo restablezco mi contraseña?"
    assert len(payload["hits"]) == 2
    top = payload["hits"][0]
    assert set(top) == {"id", "text", "label", "score", "metadata"}
    assert (top["id"], top["label"], top["metadata"]) == ("pw", "password_reset", {"section": "account", "lang": "en"})
    assert top["text"] == KB[0]["text"] and 0 < payload["hits"][1]["score"] < top["score"] <= 1

    table = mlret("query", "Wo ist mein Paket?", "--db", str(db), "-k", "1")
    assert table.exit_code == 0 and "track_order" in table.stdout and "score" in table.stdout


def test_prune_removes_records_no_longer_in_the_file(kb_file, tmp_path):
    db = tmp_path / "db"
    mlret("index", "--kb", str(kb_file), "--db", str(db), "--quiet")
    kb_file.write_text(json.dumps(KB[0]) + "\n", encoding="utf-8")
    result = mlret("index", "--kb", str(kb_file), "--db", str(db), "--quiet", "--prune")
    assert "pruned 2; 1 stored" in result.stdout, result.output


def test_bad_kb_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "ok"}\n{"text": "x", "metadata": {"tags": [1]}}\n')
    db = tmp_path / "db"
    result = mlret("index", "--kb", str(bad), "--db", str(db))
    assert_one_line_error(result, f"{bad}:3:", "metadata value for 'tags'")
    assert not db.exists()
    assert_one_line_error(mlret("index", "--kb", str(tmp_path / "none.jsonl"), "--db", str(db)), "none.jsonl")


def test_dead_server_is_one_line_naming_host_and_port(kb_file):
    port = free_port()
    assert_one_line_error(mlret("query", "hi", "--host", "127.0.0.1", "--port", str(port)), f"127.0.0.1:{port}")
    assert_one_line_error(mlret("index", "--kb", str(kb_file), "--host", "127.0.0.1", "--port", str(port)),
                          f"127.0.0.1:{port}")


def test_query_errors(tmp_path, kb_file):
    assert_one_line_error(mlret("query", "hi", "--db", str(tmp_path / "nothing")), "no database at")
    db = tmp_path / "db"
    mlret("index", "--kb", str(kb_file), "--db", str(db), "--quiet")
    assert_one_line_error(mlret("query", "hi", "--db", str(db), "--collection", "other"), "no collection 'other'")
    assert_one_line_error(mlret("query", "hi", "--db", str(db), "--host", "127.0.0.1"), "not both")


def test_mismatch_is_one_line(tmp_path, kb_file):
    from mlret_rag import MultilingualEncoder
    from mlret_rag.store import ChromaStore

    db = tmp_path / "db"
    other = MultilingualEncoder(prompts={"query": "", "document": ""})
    ChromaStore(other, path=db, show_progress_bar=False).add(KB)
    result = mlret("query", "hi", "--db", str(db))
    assert_one_line_error(result, "was indexed with encoder", other.fingerprint)


def test_query_uses_the_model_folder_that_indexed(tmp_path, kb_file, encoder):
    db = tmp_path / "db"
    folder = str(encoder.model_path)
    assert mlret("index", "--kb", str(kb_file), "--db", str(db), "--model", folder, "--quiet").exit_code == 0
    result = mlret("query", "Wo ist mein Paket?", "--db", str(db), "--json", "-k", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hits"][0]["id"] == "ship"
