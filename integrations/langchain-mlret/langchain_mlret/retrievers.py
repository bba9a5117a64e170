"""``MLRetRetriever``: LangChain documents from mlret-rag's multilingual retriever, scored by cosine."""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, field_validator

from mlret_rag.location import StoreLocation
from mlret_rag.retriever import MultilingualRetriever
from mlret_rag.store import ChromaStore, Hit

# Keywords that open a collection (``MultilingualRetriever.open``) instead of taking ``retriever=``:
# ``location=`` or its fields (path, host, port, ssl, headers, auth_token, tenant, database, client, ...).
OPEN_KEYWORDS = ("model", "location", *(f.name for f in fields(StoreLocation)), "collection", "backend", "create",
                 "show_progress_bar")


class MLRetRetriever(BaseRetriever):
    """Retrieve knowledge-base records for a question in any language.

    Each ``Document`` has ``id`` = the KB id, ``page_content`` = the KB text, and metadata ``id``,
    ``label``, ``score`` (the core's cosine similarity, higher is better), ``lang`` and the record's own
    metadata. Chunks of documents indexed with ``mlret index --docs`` (or ``mlret_rag.load_documents``)
    carry their source there: ``source`` (LangChain's citation key: the file's path), ``doc_id``,
    ``title``, ``headings``, ``chunk``, ``start``, ``end`` and, for PDF, ``page``.

    Give either ``retriever=`` (a core ``MultilingualRetriever`` or ``ChromaStore``) or where the
    collection is, as keywords, the way LangChain's own vector-store retrievers are built.

    Args:
        retriever: a core ``MultilingualRetriever``, or a ``ChromaStore`` to search.
        location: instead of ``retriever``, where a collection built by mlret-rag (e.g. ``mlret index``)
            is: a ``mlret_rag.StoreLocation``; it is opened with ``MultilingualRetriever.open``.
        path, host, port, ssl, headers, auth_token, tenant, database, client, timeout: the fields of
            ``location`` as keywords, the way langchain-chroma takes them (``client=``: an existing
            chromadb client, used as is and left open).
        model, collection, backend, create, show_progress_bar: for opening a collection
            (``model=None``: the model the collection records).
        k: number of documents to return (also accepted by ``invoke(query, k=...)``).
        where: a Chroma metadata filter on ``label``, ``lang`` or the records' metadata
            (also accepted by ``invoke``).
        per_document: at most this many documents from one source document (``doc_id``), so the ``k``
            results spread over more files (also accepted by ``invoke``; default: no cap).

    Example:
        .. code-block:: python

            from langchain_mlret import MLRetRetriever

            retriever = MLRetRetriever(path="kb-db", collection="mlret", k=3)
            docs = retriever.invoke("Wo ist meine Bestellung?")

            # or a chromadb client you already have (langchain-chroma's ``client=``)
            retriever = MLRetRetriever(client=chromadb.HttpClient(host="chroma"), collection="mlret")
    """

    retriever: MultilingualRetriever
    k: int = Field(default=5, gt=0, description="Number of documents to return.")
    where: dict[str, Any] | None = Field(default=None, description="Chroma metadata filter.")
    per_document: int | None = Field(default=None, gt=0, description="Most results from one source document.")

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    def __init__(self, retriever: MultilingualRetriever | ChromaStore | None = None, **kwargs: Any) -> None:
        opening = {key: kwargs.pop(key) for key in OPEN_KEYWORDS if key in kwargs}
        if opening:
            if retriever is not None:
                raise ValueError(f"give either retriever= or {'=/'.join(opening)}=, not both")
            retriever = MultilingualRetriever.open(opening.pop("model", None), **opening)
        if retriever is not None:
            kwargs["retriever"] = retriever
        super().__init__(**kwargs)

    @field_validator("retriever", mode="before")
    @classmethod
    def _wrap_store(cls, value: Any) -> Any:
        if isinstance(value, ChromaStore):
            return MultilingualRetriever(value)
        if not isinstance(value, MultilingualRetriever):  # pydantic reports ValueError, not TypeError
            raise ValueError(  # noqa: TRY004
                f"retriever must be a MultilingualRetriever or a ChromaStore, got {type(value).__name__}"
            )
        return value

    @classmethod
    def open(cls, model: str | None = None, **kwargs: Any) -> MLRetRetriever:
        """Deprecated: pass the same keywords to the constructor, ``MLRetRetriever(path=..., k=...)``."""
        warnings.warn("MLRetRetriever.open(...) is deprecated; pass the same keywords to MLRetRetriever(...)",
                      DeprecationWarning, stacklevel=2)
        return cls(model=model, **kwargs)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        where: dict[str, Any] | None = None,
        per_document: int | None = None,
    ) -> list[Document]:
        hits = self.retriever.retrieve(query, k=self.k if k is None else k,
                                       where=self.where if where is None else where,
                                       per_document=self.per_document if per_document is None else per_document)
        return [_to_document(hit) for hit in hits]


def _to_document(hit: Hit) -> Document:
    metadata = {**hit.metadata, "id": hit.id, "label": hit.label, "score": hit.score}
    return Document(id=hit.id, page_content=hit.text, metadata=metadata)
