"""Chunks of documents indexed by the core come back as Documents with LangChain's ``source`` metadata."""

from __future__ import annotations

from langchain_mlret import MLRetRetriever

from mlret_rag.testing import SOURCE_FIELDS


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
