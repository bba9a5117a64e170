"""``MLRetRetriever.from_defaults`` opens a collection from one ``location=`` or an existing chromadb
``client=`` (used as is and left open), like ``ChromaVectorStore(chroma_collection=...)`` users have."""

from __future__ import annotations

import chromadb
import pytest
from llama_index.retrievers.mlret import MLRetRetriever

from mlret_rag import ChromaStore, StoreLocation


@pytest.fixture(scope="module")
def kb_db(encoder, kb_rows, tmp_path_factory):
    path = tmp_path_factory.mktemp("li-location-db")
    with ChromaStore(encoder, path=path, collection="li-loc", show_progress_bar=False) as store:
        store.add(kb_rows)
    return path


def test_from_defaults_takes_a_client_or_a_location(kb_db, core_retriever):
    query = "¿Cuándo recibo el reembolso?"
    expected = [h.id for h in core_retriever.retrieve(query, k=2)]
    client = chromadb.PersistentClient(path=str(kb_db))
    try:
        retriever = MLRetRetriever.from_defaults(client=client, collection="li-loc", similarity_top_k=2,
                                                 create=False)
        assert [n.node.node_id for n in retriever.retrieve(query)] == expected
        retriever.core.close()
        assert client.get_collection("li-loc").count() == 6  # the caller's client stays open
    finally:
        client.close()
    retriever = MLRetRetriever.from_defaults(location=StoreLocation(path=kb_db), collection="li-loc",
                                             similarity_top_k=2, create=False)
    try:
        assert [n.node.node_id for n in retriever.retrieve(query)] == expected
        assert retriever.core.store.location == f"embedded:{kb_db}"
    finally:
        retriever.core.close()
    with pytest.raises(ValueError, match="give either location= or path=, not both"):
        MLRetRetriever.from_defaults(location=StoreLocation(path=kb_db), path=kb_db)
