"""LangChain's standard retriever suite, plus ids, scores, metadata and filters against the core."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_mlret import MLRetRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests


class TestMLRetRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _core(self, core_retriever) -> None:
        self._core_retriever = core_retriever

    @property
    def retriever_constructor(self) -> type[MLRetRetriever]:
        return MLRetRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"retriever": self._core_retriever}

    @property
    def retriever_query_example(self) -> str:
        return "¿Cuándo me devuelven el dinero?"


def test_documents_carry_id_label_and_cosine_score(core_retriever) -> None:
    query = "Wie setze ich mein Passwort zurück?"
    docs = MLRetRetriever(retriever=core_retriever, k=3).invoke(query)
    hits = core_retriever.retrieve(query, k=3)
    assert [d.id for d in docs] == [h.id for h in hits]
    assert docs[0].metadata["label"] == "password_reset"
    for doc, hit in zip(docs, hits):
        assert isinstance(doc, Document)
        assert doc.page_content == hit.text
        assert doc.metadata["id"] == hit.id and doc.metadata["score"] == hit.score
        assert doc.metadata["dept"] == hit.metadata["dept"]
    assert docs[0].metadata["score"] >= docs[-1].metadata["score"]


def test_where_filter_in_constructor_and_invoke(core_retriever) -> None:
    query = "Wie setze ich mein Passwort zurück?"
    billing = MLRetRetriever(retriever=core_retriever, k=4, where={"dept": "billing"}).invoke(query)
    assert {d.metadata["label"] for d in billing} == {"refund"} and len(billing) == 2
    shipping = MLRetRetriever(retriever=core_retriever).invoke(query, where={"label": "track_order"}, k=1)
    assert [d.metadata["label"] for d in shipping] == ["track_order"]


def test_accepts_a_store_and_rejects_other_things(core_retriever) -> None:
    docs = MLRetRetriever(retriever=core_retriever.store, k=2).invoke("refund")
    assert len(docs) == 2
    with pytest.raises(ValueError, match="MultilingualRetriever or a ChromaStore"):
        MLRetRetriever(retriever="not a retriever")
    with pytest.raises(ValueError, match="k"):
        MLRetRetriever(retriever=core_retriever, k=0)


@pytest.fixture(scope="module")
def kb_db(encoder, kb_rows, tmp_path_factory):
    """An embedded database with the test KB, closed again (as ``mlret index`` leaves it)."""
    from mlret_rag import ChromaStore

    path = tmp_path_factory.mktemp("lc-kw-db")
    store = ChromaStore(encoder, path=path, collection="kw-test", show_progress_bar=False)
    store.add(kb_rows)
    store.close()
    return path


def test_constructor_keywords_open_a_collection(kb_db, core_retriever) -> None:
    query = "Wie setze ich mein Passwort zurück?"
    opened = MLRetRetriever(path=kb_db, collection="kw-test", k=2, create=False)
    try:
        assert [d.id for d in opened.invoke(query)] == [h.id for h in core_retriever.retrieve(query, k=2)]
    finally:
        opened.retriever.close()
    with pytest.raises(ValueError, match="either retriever= or path="):
        MLRetRetriever(retriever=core_retriever, path=kb_db)


def test_open_is_a_deprecated_alias(kb_db) -> None:
    with pytest.warns(DeprecationWarning, match="MLRetRetriever\\(...\\)"):
        opened = MLRetRetriever.open(path=kb_db, collection="kw-test", k=1)
    try:
        assert len(opened.invoke("refund")) == 1 and opened.k == 1
    finally:
        opened.retriever.close()


def test_an_existing_chromadb_client_or_a_location_opens_a_collection(kb_db, core_retriever) -> None:
    import chromadb

    from mlret_rag import StoreLocation

    query = "Wie setze ich mein Passwort zurück?"
    expected = [h.id for h in core_retriever.retrieve(query, k=2)]
    client = chromadb.PersistentClient(path=str(kb_db))  # as langchain-chroma's Chroma(client=...)
    try:
        opened = MLRetRetriever(client=client, collection="kw-test", k=2, create=False)
        assert [d.id for d in opened.invoke(query)] == expected
        assert opened.retriever.store.location == f"client:{kb_db}"
        opened.retriever.close()
        assert client.get_collection("kw-test").count() == 6  # the caller's client stays open
    finally:
        client.close()
    by_value = MLRetRetriever(location=StoreLocation(path=kb_db), collection="kw-test", k=2, create=False)
    try:
        assert [d.id for d in by_value.invoke(query)] == expected
    finally:
        by_value.retriever.close()
    with pytest.raises(ValueError, match="either retriever= or client="):
        MLRetRetriever(retriever=core_retriever, client=object())
