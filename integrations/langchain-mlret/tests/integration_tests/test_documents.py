"""Chunks of documents indexed by the core come back as Documents with LangChain's ``source`` metadata."""

from __future__ import annotations

import pytest
from langchain_mlret import MLRetRetriever

from mlret_rag import ChromaStore, MultilingualRetriever, sync_documents

SOURCE_FIELDS = {"source", "doc_id", "title", "headings", "chunk", "start", "end"}


@pytest.fixture(scope="module")
def docs_retriever(encoder, tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    (root / "returns.md").write_text("# Returns\n\n" + "\n\n".join(
        f"## Rule {i}\n\nItem group {i} can be returned within {10 + i} days if unused." for i in range(4)),
        encoding="utf-8")
    (root / "shipping.md").write_text("# Shipping\n\nParcels arrive in three to five working days.\n",
                                      encoding="utf-8")
    (root / "account.html").write_text("<h1>Account</h1><p>Reset your password with the link.</p>",
                                       encoding="utf-8")
    store = ChromaStore(encoder, path=tmp_path_factory.mktemp("lc-docs-db"), collection="docs",
                        show_progress_bar=False)
    sync_documents(store, root, chunk_tokens=32)
    yield MultilingualRetriever(store)
    store.close()


def test_documents_carry_the_core_source_fields(docs_retriever):
    question = "¿En cuántos días puedo devolver un artículo?"
    docs = MLRetRetriever(retriever=docs_retriever, k=3).invoke(question)
    hits = docs_retriever.retrieve(question, k=3)
    assert [d.id for d in docs] == [h.id for h in hits]
    for doc, hit in zip(docs, hits):
        assert SOURCE_FIELDS <= set(doc.metadata)
        assert {key: doc.metadata[key] for key in SOURCE_FIELDS} == {key: hit.metadata[key] for key in SOURCE_FIELDS}
    assert docs[0].metadata["source"] == "returns.md" and docs[0].metadata["headings"].startswith("Returns > Rule")


def test_per_document_in_constructor_and_invoke(docs_retriever):
    question = "¿En cuántos días puedo devolver un artículo?"
    capped = MLRetRetriever(retriever=docs_retriever, k=3, per_document=1).invoke(question)
    assert len({d.metadata["source"] for d in capped}) == 3
    uncapped = MLRetRetriever(retriever=docs_retriever, k=3)
    assert [d.metadata["source"] for d in uncapped.invoke(question)].count("returns.md") >= 2
    assert len({d.metadata["source"] for d in uncapped.invoke(question, per_document=1)}) == 3
