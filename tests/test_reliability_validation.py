"""Issue 14, items 3 and 6: input that Chroma would refuse, drop or change is refused before anything is
written, naming file:line; contentless text is refused like an empty string; a refusal by the store itself
names the record, and a failed first run leaves no empty collection behind."""

from __future__ import annotations

import json

import pytest
from chroma_server import chroma_server_address  # noqa: F401  (fixture)
from typer.testing import CliRunner

from mlret_rag.cli import app
from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.kb import KBRecord, load_kb, load_queries
from mlret_rag.store import ChromaStore, open_client

CONTENTLESS = ["\u200b", "\u200b\u200c\u2060", "\x00\x01\x1f", "\ufeff \t", "\u00ad\u200e", " \u3000\u2028"]


def write_kb(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")  # lone surrogates stay \u escapes
    return path


def collections(db) -> list[str]:
    client, _ = open_client(path=db)
    try:
        return [c.name for c in client.list_collections()]
    finally:
        client.close()


@pytest.mark.parametrize("text", CONTENTLESS)
def test_contentless_text_is_refused_by_the_loaders_with_file_and_line(tmp_path, text):
    path = write_kb(tmp_path / "kb.jsonl", [{"text": "fine"}, {"text": text}])
    with pytest.raises(KnowledgeBaseError, match=rf'^{path}:2: "text" is empty'):
        load_kb(path)
    csv_path = tmp_path / "q.csv"
    csv_path.write_text(f"text\nfine\n{text.replace(chr(10), '')}x\n", encoding="utf-8")
    assert len(load_queries(csv_path)) == 2  # a visible character makes it content
    with pytest.raises(KnowledgeBaseError, match=r'^<dataset>:1: "text" is empty'):
        load_queries([{"text": text}])


def test_text_with_a_zero_width_space_and_content_is_kept(tmp_path):
    path = write_kb(tmp_path / "kb.jsonl", [{"text": "\u200breset my password\u200b"}])
    assert load_kb(path)[0].text == "\u200breset my password\u200b"


@pytest.mark.parametrize("text", CONTENTLESS)
def test_encoder_refuses_contentless_text_naming_its_position(encoder, text):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        encoder.encode_documents(["a real sentence", text])
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        encoder.encode_queries([text])


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"#document": "x"}, "metadata key '#document' is reserved by Chroma"),
        ({"#x": "x"}, "metadata key '#x' is reserved by Chroma"),
        ({"chroma:document": "x"}, "metadata key 'chroma:document' is reserved by Chroma"),
        ({"chroma:page": "x"}, "metadata key 'chroma:page' is reserved by Chroma"),
        ({"$and": "x"}, "metadata key '$and' is reserved by Chroma"),
        ({"": "x"}, "metadata keys must be non-empty strings"),
        ({"n": 2**63}, "outside the 64-bit integer range"),
        ({"n": -(2**63) - 1}, "outside the 64-bit integer range"),
        ({"k": "\ud800"}, "metadata value for 'k' is not valid Unicode"),
        ({"\udc00": 1}, "metadata key is not valid Unicode"),
        ({"mlret_hash": "x"}, "metadata key 'mlret_hash' is reserved"),
    ],
)
def test_metadata_chroma_would_refuse_is_refused_with_file_and_line(tmp_path, metadata, expected):
    rows = [{"text": f"record {i}"} for i in range(600)] + [{"text": "last", "metadata": metadata}]
    path = write_kb(tmp_path / "kb.jsonl", rows)
    with pytest.raises(KnowledgeBaseError) as err:
        load_kb(path)
    assert str(err.value).startswith(f"{path}:601: ") and expected in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(KnowledgeBaseError, match=r"<dataset>:1: metadata value for 'x' must be a finite number"):
        load_kb([{"text": "a", "metadata": {"x": value}}])


def test_values_chroma_keeps_exactly_still_load():
    recs = load_kb([{"text": "a", "metadata": {"a$": "x", "n": 2**63 - 1, "m": -(2**63), "e": "", "f": 0.5}}])
    assert recs[0].metadata["n"] == 2**63 - 1


def test_cli_refuses_the_601st_line_before_opening_the_database(tmp_path):
    """The reported failure: 512 records stored, then `Invalid metadata at index 88`. Now: nothing written."""
    rows = [{"text": f"record number {i}"} for i in range(600)] + [{"text": "x", "metadata": {"#document": "y"}}]
    kb = write_kb(tmp_path / "kb.jsonl", rows)
    db = tmp_path / "db"
    result = CliRunner().invoke(app, ["index", "--kb", str(kb), "--db", str(db), "--quiet"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {kb}:601: metadata key '#document' is reserved by Chroma (keys may not start with '#', '$', 'chroma:')"
    )
    assert not db.exists()


def test_a_store_side_refusal_names_the_record_and_leaves_no_empty_collection(encoder, tmp_path):
    """Records built in code skip the loader; Chroma's own refusal names the record, not a batch index."""
    db = tmp_path / "db"
    good = [KBRecord(id=f"g{i}", text=f"good record {i}") for i in range(5)]
    bad = KBRecord(id="bad", text="bad record", metadata={"#x": 1})
    store = ChromaStore(encoder, path=db, collection="first-run", show_progress_bar=False)
    with pytest.raises(KnowledgeBaseError) as err:
        store.add([*good, bad])
    assert str(err.value).startswith("record 'bad': Chroma refused record 'bad': ")
    assert "index" not in str(err.value)
    assert "first-run" not in collections(db)  # the failed first run left nothing behind
    # the same store object still works: the collection is created again on the next add
    assert store.add(good).added == 5 and store.count() == 5
    with pytest.raises(KnowledgeBaseError, match=r"^record 'bad': Chroma refused record 'bad'"):
        store.add([KBRecord(id="bad", text="bad record", metadata={"$x": 1})])
    assert store.count() == 5 and "first-run" in collections(db)  # not empty: kept
    store.close()


def test_a_server_refusal_names_file_and_line_and_a_failed_first_run_leaves_nothing(
    encoder, tmp_path, chroma_server_address  # noqa: F811
):
    """A real `chroma run` refuses request bodies over its payload limit (a 41 MiB metadata value)."""
    host, port = chroma_server_address
    blob = "x" * (41 << 20)
    kb = write_kb(tmp_path / "kb.jsonl", [{"id": "a", "text": "first"}, {"id": "big", "text": "second",
                                                                      "metadata": {"blob": blob}}])
    records = load_kb(kb)
    store = ChromaStore(encoder, host=host, port=port, collection="refused-big", batch_size=1,
                        show_progress_bar=False)
    with pytest.raises(KnowledgeBaseError) as err:
        store.add(records)
    assert str(err.value).startswith(f"{kb}:2: Chroma refused record 'big': ")
    assert "too large" in str(err.value).lower()
    assert store.count() == 1  # what was committed stays
    store.close()

    one = write_kb(tmp_path / "one.jsonl", [{"id": "big", "text": "only", "metadata": {"blob": blob}}])
    store = ChromaStore(encoder, host=host, port=port, collection="refused-first", show_progress_bar=False)
    with pytest.raises(KnowledgeBaseError, match=rf"^{one}:1: Chroma refused record 'big'"):
        store.add(load_kb(one))
    client, _ = open_client(host=host, port=port)
    assert "refused-first" not in [c.name for c in client.list_collections()]
    client.close()
    store.close()


def test_a_refused_replacement_keeps_the_stored_version(encoder, tmp_path):
    """A changed record is deleted and re-added; when the store refuses the new version the old one is put back."""
    store = ChromaStore(encoder, path=tmp_path / "db", collection="replace", show_progress_bar=False)
    store.add([KBRecord(id="r1", text="the stored version", label="a"), KBRecord(id="r2", text="untouched")])
    with pytest.raises(KnowledgeBaseError, match=r"^record 'r1': Chroma refused"):
        store.add([KBRecord(id="r1", text="a changed version", metadata={"#x": 1})])
    (kept,) = store.get(["r1"])
    assert (kept.text, kept.label) == ("the stored version", "a") and store.count() == 2
    assert store.verify(ids=["r1"]).ok  # its vector came back too
    store.close()
