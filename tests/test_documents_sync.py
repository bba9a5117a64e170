"""Documents in a real embedded Chroma: sync after edits, deletions and kills; per-document capping; CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import cosines, kill_when_committed
from typer.testing import CliRunner

from mlret_rag import ChromaStore, MultilingualRetriever, load_documents, sync_documents
from mlret_rag.cli import app

ARTICLES = {
    "returns.md": "# Returns\n\n" + "\n\n".join(
        f"## Rule {i}\n\nItem group {i} can be returned within {10 + i} days if it is unused and in its box."
        for i in range(6)),
    "shipping/parcels.md": "# Parcels\n\nParcels arrive in three to five working days.\n\n## Tracking\n\n"
                           "Track your parcel under My orders. The tracking link arrives by email.\n",
    "account.html": "<h1>Account</h1><p>Reset your password with the Forgot password link.</p>"
                    "<h2>Deleting</h2><p>Deleting your account removes all your orders.</p>",
    "hours.txt": "Support is open from nine to five, Monday to Friday. On holidays we are closed.\n",
}
OPTIONS = {"chunk_tokens": 32, "overlap_tokens": 0}


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def edit_v2(root: Path) -> None:
    """Shorten one document, change another, add one, delete one."""
    (root / "returns.md").write_text("# Returns\n\n## Rule 0\n\nEverything can be returned within 30 days.\n",
                                     encoding="utf-8")
    (root / "hours.txt").write_text("Support is open from eight to six, every day of the week.\n", encoding="utf-8")
    (root / "shipping" / "customs.md").write_text("# Customs\n\nParcels from abroad may need customs duty.\n",
                                                  encoding="utf-8")
    (root / "account.html").unlink()


def snapshot(store: ChromaStore) -> list[tuple]:
    """Everything stored, comparable across databases."""
    return sorted((r.id, r.text, json.dumps(r.metadata, sort_keys=True)) for r in store.get(store.ids()))


@pytest.fixture
def make_store(encoder, tmp_path):
    opened = []

    def make(name: str = "db", enc=None, **kw) -> ChromaStore:
        store = ChromaStore(enc or encoder, path=tmp_path / name, collection="docs", show_progress_bar=False, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def fresh_index(make_store, folder: Path, name: str) -> list[tuple]:
    store = make_store(name)
    sync_documents(store, folder, **OPTIONS)
    return snapshot(store)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "docs"
    write(root, ARTICLES)
    return root


def test_resync_encodes_only_changed_documents_and_leaves_no_stale_chunks(make_store, folder):
    store = make_store()
    first = sync_documents(store, folder, **OPTIONS)
    n_returns = sum(1 for r in load_documents(folder, **OPTIONS) if r.metadata["doc_id"] == "returns.md")
    assert n_returns >= 6 and first.documents == 4 and first.encoded == first.chunks == store.count()
    again = sync_documents(store, folder, **OPTIONS)
    assert (again.encoded, again.unchanged, again.removed) == (0, first.chunks, 0)

    edit_v2(folder)
    result = sync_documents(store, folder, **OPTIONS)
    v2 = load_documents(folder, **OPTIONS)
    changed = [r for r in v2 if r.metadata["doc_id"] in ("returns.md", "hours.txt", "shipping/customs.md")]
    assert result.encoded == len(changed)  # shipping/parcels.md is not re-encoded
    assert result.removed == n_returns - 1  # returns.md got shorter
    assert result.pruned == 0 and any(i.startswith("account.html#") for i in store.ids())  # no --prune yet
    pruned = sync_documents(store, folder, prune=True, **OPTIONS)
    assert pruned.pruned_documents == 1 and pruned.encoded == 0
    assert snapshot(store) == fresh_index(make_store, folder, "fresh")


def test_prune_leaves_plain_records_and_skipped_files_alone(make_store, folder):
    from mlret_rag.documents import split_long_records
    from mlret_rag.kb import KBRecord

    store = make_store()
    store.add([{"id": "faq-1", "text": "How do I pay? By card or PayPal."}])
    terms = " ".join(f"Clause {i}: the buyer may cancel order {i} within two weeks." for i in range(120))
    chunks = split_long_records([KBRecord(id="terms", text=terms)], store.encoder)  # as mlret index --chunk-long
    assert len(chunks) > 1 and all(c.metadata["doc_id"] == "terms" for c in chunks)
    store.add(chunks)
    sync_documents(store, folder, **OPTIONS)
    (folder / "hours.txt").write_bytes(b"Caf\xe9 \xfa not UTF-8")  # now undecodable: skipped, chunks kept
    result = sync_documents(store, folder, prune=True, **OPTIONS)
    assert [Path(s.path).name for s in result.skipped] == ["hours.txt"] and result.pruned == 0
    assert "faq-1" in store.ids() and "hours.txt#0" in store.ids()
    assert {c.id for c in chunks} <= set(store.ids())  # a KB record's chunks are not a deleted document


def test_prune_refuses_a_single_file_which_cannot_tell_what_is_gone(make_store, folder):
    from mlret_rag.documents import DocumentError

    store = make_store()
    sync_documents(store, folder, **OPTIONS)
    before = sorted(store.ids())
    one = next(p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in {".md", ".txt", ".html"})
    with pytest.raises(DocumentError, match="prune needs the folder"):
        sync_documents(store, one, prune=True, **OPTIONS)
    assert sorted(store.ids()) == before  # nothing deleted


class FailingEncoder:
    """The real encoder, except that document-encoding call number ``fail_on`` raises (an injected crash)."""

    def __init__(self, inner, fail_on: int) -> None:
        self._inner, self._fail_on, self.calls = inner, fail_on, 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode_documents(self, texts):
        self.calls += 1
        if self.calls == self._fail_on:
            raise KeyboardInterrupt("injected crash")
        return self._inner.encode_documents(texts)


@pytest.mark.parametrize("crash", ["encode:1", "encode:2", "encode:3", "delete:1"])
def test_sync_interrupted_at_any_step_converges(make_store, folder, encoder, crash):
    sync_documents(make_store(), folder, **OPTIONS)
    edit_v2(folder)
    assert sum(1 for r in load_documents(folder, **OPTIONS) if r.metadata["doc_id"] != "shipping/parcels.md") == 3
    where, n = crash.split(":")  # one chunk per batch: encode:3 is the last batch, delete:1 comes after it
    if where == "encode":
        broken = make_store(enc=FailingEncoder(encoder, int(n)), batch_size=1)
    else:
        broken = make_store(batch_size=1)

        def fail(ids):
            raise KeyboardInterrupt("injected crash")

        broken.delete = fail  # the crash lands after every chunk is written, before stale ones are gone
    with pytest.raises(KeyboardInterrupt):
        sync_documents(broken, folder, prune=True, **OPTIONS)
    store = make_store()
    result = sync_documents(store, folder, prune=True, **OPTIONS)
    assert snapshot(store) == fresh_index(make_store, folder, "fresh")
    if where == "encode" and int(n) > 1:
        assert result.unchanged > 0  # what the crashed run committed is not encoded again


def test_killed_cli_sync_converges(make_store, folder, tmp_path, encoder):
    """SIGKILL ``mlret index --docs`` once the database holds at least one committed batch of changed chunks
    (read from this process) and not all of them; the next run encodes only the rest and ends as a fresh index."""
    n = 150
    write(folder, {f"faq/{i:03d}.md": f"# Question {i}\n\nHow do I change setting {i} of order {i * 7}? "
                   f"Open settings, pick entry {i} and save." for i in range(n)})
    db = tmp_path / "db"
    with make_store() as first:  # closed before the CLI writes: a client kept open would not see its vectors
        total = sync_documents(first, folder, **OPTIONS).chunks
    new_text = "now lives under Profile."
    for i in range(n):  # every FAQ document changes (one chunk each)
        (folder / f"faq/{i:03d}.md").write_text(f"# Question {i}\n\nSetting {i} {new_text}", encoding="utf-8")
    faq_ids = [f"faq/{i:03d}.md#0" for i in range(n)]
    log = tmp_path / "killed.log"
    with make_store() as poller, log.open("wb") as out:
        assert poller.count() == total

        def replaced() -> int:
            return sum(new_text in r.text for r in poller.get(faq_ids))

        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlret")), "index", "--docs", str(folder), "--db", str(db),
             "--collection", "docs", "--batch-size", "2", "--chunk-tokens", "32", "--overlap-tokens", "0", "--prune",
             "--quiet"],
            env={**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"},
            stdout=out, stderr=subprocess.STDOUT,
        )
        kill_when_committed(proc, replaced, at_least=2, total=n, log=log)
    with make_store() as after_kill:
        done = sum(new_text in r.text for r in after_kill.get(faq_ids))
    assert 2 <= done < n
    store = make_store()
    result = sync_documents(store, folder, prune=True, **OPTIONS)
    assert (result.encoded, result.unchanged) == (n - done, total - n + done)  # committed chunks are not redone
    assert snapshot(store) == fresh_index(make_store, folder, "fresh")
    report = store.verify()
    assert report.ok and report.checked == total, report.summary()
    got = store.collection.get(ids=faq_ids, include=["embeddings", "documents"])
    assert cosines(np.asarray(got["embeddings"], dtype=np.float32),
                   encoder.encode_documents(got["documents"])).min() > 0.9999  # vectors of the new texts


def test_per_document_caps_hits_and_hits_carry_sources(make_store, folder):
    store = make_store()
    sync_documents(store, folder, **OPTIONS)
    retriever = MultilingualRetriever(store)
    question = "¿En cuántos días puedo devolver un artículo?"
    plain = retriever.retrieve(question, k=5)
    assert sum(h.metadata["doc_id"] == "returns.md" for h in plain) >= 3
    capped = retriever.retrieve(question, k=5, per_document=1)
    docs = [h.metadata["doc_id"] for h in capped]
    assert len(capped) == 4 and len(set(docs)) == 4 and docs[0] == "returns.md"  # only 4 documents exist
    assert capped[0] == plain[0]
    two = retriever.retrieve(question, k=5, per_document=2)
    assert [h.metadata["doc_id"] for h in two].count("returns.md") == 2 and len(two) == 5
    top = capped[0].metadata
    assert top["source"] == "returns.md" and top["title"] == "Returns" and top["headings"].startswith("Returns > Rule")
    assert {"chunk", "start", "end"} <= set(top)
    assert retriever.retrieve_batch([question, "Passwort zurücksetzen"], k=2, per_document=1)[1][0].metadata[
        "doc_id"] == "account.html"
    with pytest.raises(ValueError, match="per_document must be a positive integer"):
        retriever.retrieve(question, per_document=0)


def mlret(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_index_docs_then_query_per_document(tmp_path, folder):
    from support import pdf_bytes

    (folder / "manual.pdf").write_bytes(pdf_bytes(["Warranty\nThe warranty lasts two years."]))
    (folder / "scan.pdf").write_bytes(pdf_bytes([None]))
    (folder / "empty.md").write_text("\n", encoding="utf-8")
    db = tmp_path / "cli-db"
    first = mlret("index", "--docs", str(folder), "--db", str(db), "--quiet", "--chunk-tokens", "64")
    assert first.exit_code == 0, first.output
    assert re.search(r"indexed \d+ chunks of 5 documents from .* encoded \d+ \(added \d+, updated 0\)", first.stdout)
    assert "skipped 2 files:" in first.stdout
    assert f"{folder / 'empty.md'}: empty document (no text)" in first.stdout
    assert f"{folder / 'scan.pdf'}: no text on any of its 1 page(s)" in first.stdout
    again = mlret("index", "--docs", str(folder), "--db", str(db), "--quiet", "--chunk-tokens", "64")
    assert "encoded 0 (added 0, updated 0)" in again.stdout

    shutil.rmtree(folder / "shipping")
    pruned = mlret("index", "--docs", str(folder), "--db", str(db), "--quiet", "--chunk-tokens", "64", "--prune")
    assert "pruned 2 chunks of 1 deleted documents" in pruned.stdout, pruned.output

    result = mlret("query", "Combien de jours pour retourner un article ?", "--db", str(db), "--json", "-k", "3",
                   "--per-document", "1")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3 and len({h["metadata"]["source"] for h in hits}) == 3
    assert hits[0]["metadata"]["source"] == "returns.md" and hits[0]["id"].startswith("returns.md#")
    table = mlret("query", "garantie", "--db", str(db), "--per-document", "1")
    assert table.exit_code == 0 and "manual.pdf" in table.stdout


def test_cli_names_records_longer_than_the_window_or_chunks_them(tmp_path):
    long_text = " ".join(f"Clause {i} of the terms says the buyer may cancel order {i}." for i in range(120))
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "terms", "text": long_text, "label": "legal"}) + "\n"
                  + json.dumps({"id": "short", "text": "Short answer."}) + "\n", encoding="utf-8")
    db = tmp_path / "db"
    warned = mlret("index", "--kb", str(kb), "--db", str(db), "--quiet")
    assert warned.exit_code == 0, warned.output
    assert re.search(r"warning: 1 record is longer than the encoder's 512-token window .* terms \(\d+ tokens\);"
                     r" pass --chunk-long", warned.stderr), warned.stderr
    assert "indexed 2 records" in warned.stdout
    chunked = mlret("index", "--kb", str(kb), "--db", str(tmp_path / "db2"), "--quiet", "--chunk-long")
    assert chunked.exit_code == 0, chunked.output
    assert re.search(r"split 1 records longer than the encoder's window into \d+ chunks", chunked.stderr)
    hits = json.loads(mlret("query", "Kann ich Bestellung 117 stornieren?", "--db", str(tmp_path / "db2"),
                            "--json", "-k", "1").stdout)["hits"]
    assert hits[0]["id"].startswith("terms#") and hits[0]["label"] == "legal"
    assert "order 117" in hits[0]["text"] and hits[0]["metadata"]["doc_id"] == "terms"


def test_cli_option_mistakes_are_one_line(tmp_path, folder):
    both = mlret("index", "--kb", str(tmp_path / "kb.jsonl"), "--docs", str(folder), "--db", str(tmp_path / "d"))
    assert both.exit_code == 1 and "give either --kb FILE (records) or --docs PATH" in both.stderr
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    empty = mlret("index", "--docs", str(nothing), "--db", str(tmp_path / "d"), "--quiet")
    assert empty.exit_code == 1 and "no documents to index" in empty.stderr
    big = mlret("index", "--docs", str(folder), "--db", str(tmp_path / "d"), "--chunk-tokens", "900")
    assert big.exit_code == 1 and "chunk_tokens must be an integer in 8..500" in big.stderr
