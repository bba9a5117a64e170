"""``MLRetRetriever``: LlamaIndex nodes from mlret-rag's multilingual retriever, scored by cosine."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.retrievers.mlret.filters import to_chroma_where

from mlret_rag.location import StoreLocation
from mlret_rag.retriever import MultilingualRetriever
from mlret_rag.store import ChromaStore, Hit


class MLRetRetriever(BaseRetriever):
    """Retrieve knowledge-base records for a question in any language.

    Each result is a ``NodeWithScore`` whose node id is the KB id, whose text is the KB text, whose
    metadata holds ``label`` (and ``lang`` plus the record's own metadata), and whose score is the
    core's cosine similarity (higher is better, at most 1). Chunks of documents indexed with
    ``mlret index --docs`` carry the same source fields as in LangChain (``source``, ``doc_id``,
    ``title``, ``headings``, ``chunk``, ``start``, ``end``, PDF ``page``); their node also links its
    document (``node.ref_doc_id`` = ``doc_id``) and its character span (``start_char_idx``/``end_char_idx``).

    Args:
        retriever: a core ``MultilingualRetriever``, or a ``ChromaStore`` to search.
        similarity_top_k: number of records to return.
        filters: LlamaIndex ``MetadataFilters`` on ``label``, ``lang`` or the records' metadata.
        per_document: at most this many nodes from one source document (``doc_id``); default no cap.
    """

    def __init__(
        self,
        retriever: MultilingualRetriever | ChromaStore,
        *,
        similarity_top_k: int = 5,
        filters: MetadataFilters | None = None,
        per_document: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if isinstance(retriever, ChromaStore):
            retriever = MultilingualRetriever(retriever)
        if not isinstance(retriever, MultilingualRetriever):
            raise TypeError(
                f"retriever must be a MultilingualRetriever or a ChromaStore, got {type(retriever).__name__}"
            )
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        if per_document is not None and (
            not isinstance(per_document, int) or isinstance(per_document, bool) or per_document < 1
        ):
            raise ValueError(f"per_document must be a positive integer or None, got {per_document!r}")
        self._core = retriever
        self.per_document = per_document
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        self._where = to_chroma_where(filters)  # fail early on unsupported filters
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def from_defaults(cls, model: str | None = None, *, location: StoreLocation | None = None,
                      similarity_top_k: int = 5, filters: MetadataFilters | None = None,
                      per_document: int | None = None, **open_kwargs: Any) -> MLRetRetriever:
        """Open a collection built by mlret-rag (e.g. ``mlret index``) with ``MultilingualRetriever.open``.

        ``location`` is where it is (a ``mlret_rag.StoreLocation``), or give its fields as keywords:
        ``path=``, ``host=``/``port=``/``ssl=``/``headers=``/``auth_token=``, or ``client=`` (an existing
        chromadb client, used as is and left open). The other ``open_kwargs`` (``collection``, ``backend``,
        ``create``, ...) go to ``MultilingualRetriever.open`` too."""
        return cls(MultilingualRetriever.open(model, location=location, **open_kwargs),
                   similarity_top_k=similarity_top_k, filters=filters, per_document=per_document)

    @property
    def core(self) -> MultilingualRetriever:
        """The core retriever this adapter delegates to."""
        return self._core

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._core.retrieve(query_bundle.query_str, k=self.similarity_top_k, where=self._where,
                                   per_document=self.per_document)
        return [_to_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _to_node(hit: Hit) -> NodeWithScore:
    meta = hit.metadata
    node = TextNode(id_=hit.id, text=hit.text, metadata={**meta, "label": hit.label})
    if meta.get("doc_id") is not None:  # a document chunk: link its document and span, as readers do
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=str(meta["doc_id"]))
        if isinstance(meta.get("start"), int) and isinstance(meta.get("end"), int):
            node.start_char_idx, node.end_char_idx = meta["start"], meta["end"]
    return NodeWithScore(node=node, score=hit.score)
