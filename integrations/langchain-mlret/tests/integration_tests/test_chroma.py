"""MLRetEmbeddings as the embedding function of langchain-chroma's ``Chroma``."""

from __future__ import annotations

import pytest
from langchain_chroma import Chroma
from langchain_mlret import MLRetEmbeddings


def test_langchain_chroma_with_mlret_embeddings(encoder, kb_rows, tmp_path) -> None:
    store = Chroma(
        collection_name="lc-chroma",
        embedding_function=MLRetEmbeddings(encoder=encoder),
        persist_directory=str(tmp_path),
        collection_metadata={"hnsw:space": "cosine"},
    )
    store.add_texts([r["text"] for r in kb_rows], metadatas=[{"label": r["label"]} for r in kb_rows],
                    ids=[r["id"] for r in kb_rows])
    question = "¿Cómo restablezco mi contraseña?"
    (doc, relevance), *_ = store.similarity_search_with_relevance_scores(question, k=2)
    assert doc.metadata["label"] == "password_reset"
    cosine = float(encoder.encode_queries([question])[0] @ encoder.encode_documents([doc.page_content])[0])
    # With a cosine collection LangChain's relevance score is 1 - distance = the cosine similarity.
    assert relevance == pytest.approx(cosine, abs=1e-4)
    assert store.as_retriever(search_kwargs={"k": 1}).invoke(question)[0].id == doc.id
