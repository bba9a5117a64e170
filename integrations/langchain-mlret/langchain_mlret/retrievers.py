"""``MLRetRetriever``: LangChain documents from mlret-rag's multilingual retriever, scored by cosine."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, field_validator

from mlret_rag.retriever import MultilingualRetriever
from mlret_rag.store import ChromaStore, Hit


class MLRetRetriever(BaseRetriever):
    """Retrieve knowledge-base records for a question in any language.

    Each ``Document`` has ``id`` = the KB id, ``page_content`` = the KB text, and metadata ``id``,
    ``label``, ``score`` (the core's cosine similarity, higher is better), ``lang`` and the record's own
    metadata. Chunks of documents indexed with ``mlret index --docs`` (or ``mlret_rag.load_documents``)
    carry their source there: ``source`` (LangChain's citation key: the file's path), ``doc_id``,
    ``title``, ``headings``, ``chunk``, ``start``, ``end`` and, for PDF, ``page``.

    Args:
        retriever: a core ``MultilingualRetriever``, or a ``ChromaStore`` to search.
        k: number of documents to return (also accepted by ``invoke(query, k=...)``).
        where: a Chroma metadata filter on ``label``, ``lang`` or the records' metadata
            (also accepted by ``invoke``).
        per_document: at most this many documents from one source document (``doc_id``), so the ``k``
            results spread over more files (also accepted by ``invoke``; default: no cap).

    Example:
        .. code-block:: python

            from langchain_mlret import MLRetRetriever

            retriever = MLRetRetriever.open(path="kb-db", collection="mlret", k=3)
            docs = retriever.invoke("Wo ist meine Bestellung?")
    """

    retriever: MultilingualRetriever
    k: int = Field(default=5, gt=0, description="Number of documents to return.")
    where: dict[str, Any] | None = Field(default=None, description="Chroma metadata filter.")
    per_document: int | None = Field(default=None, gt=0, description="Most results from one source document.")

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

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
    def open(cls, model: str | None = None, *, k: int = 5, where: dict[str, Any] | None = None,
             per_document: int | None = None, **open_kwargs: Any) -> MLRetRetriever:
        """Open a collection built by mlret-rag (e.g. ``mlret index``): ``open_kwargs`` go to
        ``MultilingualRetriever.open`` (``path``, ``host``, ``port``, ``collection``, ...)."""
        return cls(retriever=MultilingualRetriever.open(model, **open_kwargs), k=k, where=where,
                   per_document=per_document)

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
