"""Multilingual retrieval: encode a question with the store's encoder, search the store.

Score semantics (the same everywhere in mlret-rag and its integrations): ``Hit.score`` is the cosine
similarity between the query vector (query prompt applied) and the record's document vector (document
prompt applied), i.e. ``1 - chroma_cosine_distance``. Higher is better, at most 1. Scores are only
comparable within one encoder; e5 models put most scores in a narrow 0.7-0.9 band, so do not reuse
thresholds tuned for other models.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._identity import recorded_model
from .location import StoreLocation
from .store import DEFAULT_COLLECTION, ChromaStore, Hit, read_collection_info

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .location import LocationKeywords

__all__ = ["MultilingualRetriever", "cap_per_document", "recorded_model"]  # recorded_model: see _identity


class MultilingualRetriever:
    """Retrieve knowledge-base records for questions in any language.

    Args:
        store: the :class:`~mlret_rag.store.ChromaStore` to search; its encoder encodes the questions.
    """

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self.encoder = store.encoder

    @classmethod
    def open(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        location: StoreLocation | None = None,
        collection: str = DEFAULT_COLLECTION,
        show_progress_bar: bool = True,
        create: bool = True,
        backend: str | None = None,
        **shorthand: Unpack[LocationKeywords],
    ) -> MultilingualRetriever:
        """Open a store and its encoder in one call.

        ``location`` is where the database is (a :class:`~mlret_rag.StoreLocation`; default the embedded
        default database), or give its fields as keywords (``path=``, ``host=``, ``port=``, ``client=``,
        ``auth_token=``, ``timeout=``, ...; see :class:`~mlret_rag.store.ChromaStore`).
        With ``model=None`` the model recorded in an existing collection is used when it can be loaded
        here (its local folder still exists, or it is the bundled model); otherwise the bundled model.
        With ``create=False`` a missing collection raises
        :class:`~mlret_rag.store.MissingCollectionError` instead of being created empty.
        ``backend`` picks the inference engine (see :class:`~mlret_rag.MultilingualEncoder`).
        """
        from .encoder import MultilingualEncoder

        where = StoreLocation.resolve(location, **shorthand)
        if model is None:
            model = recorded_model(read_collection_info(where, collection=collection) or {})
        encoder = MultilingualEncoder(model, backend=backend)
        store = ChromaStore(encoder, where, collection=collection, show_progress_bar=show_progress_bar,
                            create=create)
        return cls(store)

    def close(self) -> None:
        """Close the underlying store (see :meth:`~mlret_rag.store.ChromaStore.close`)."""
        self.store.close()

    def __enter__(self) -> MultilingualRetriever:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def retrieve(
        self, query: str, k: int = 5, where: dict[str, Any] | None = None, per_document: int | None = None
    ) -> list[Hit]:
        """The ``k`` best records for ``query``, best first; ``where`` is a Chroma metadata filter.

        ``per_document`` caps how many hits come from one document (records with the same ``doc_id``
        metadata, as :func:`~mlret_rag.load_documents` writes; a record without one is its own
        document), so the ``k`` hits spread over more sources. More candidates are searched until ``k``
        hits pass the cap or the collection has no more.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        return self.retrieve_batch([query], k=k, where=where, per_document=per_document)[0]

    def retrieve_batch(
        self,
        queries: list[str],
        k: int = 5,
        where: dict[str, Any] | None = None,
        per_document: int | None = None,
    ) -> list[list[Hit]]:
        """:meth:`retrieve` for many questions, encoded in one pass."""
        if per_document is not None and (
            not isinstance(per_document, int) or isinstance(per_document, bool) or per_document < 1
        ):
            raise ValueError(f"per_document must be a positive integer or None, got {per_document!r}")
        if not queries:
            return []
        vectors = self.encoder.encode_queries(queries)
        if per_document is None:
            return self.store.query(vectors, k=k, where=where)
        return [self._capped(v, k, where, per_document) for v in vectors]

    def _capped(self, vector: Any, k: int, where: dict[str, Any] | None, cap: int) -> list[Hit]:
        n, total = k * 4, None
        while True:
            hits = self.store.query(vector[None, :], k=n, where=where)[0]
            kept = cap_per_document(hits, cap)
            if len(kept) >= k or len(hits) < n:
                return kept[:k]
            total = self.store.count() if total is None else total
            if n >= total:  # every record was looked at
                return kept[:k]
            n = min(n * 4, total)  # widen, but never past the collection

    def top_labels(
        self, query: str, k: int = 10, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Labels of the ``k`` best records, each scored by its best hit (max cosine), best first.

        Max rather than sum or mean keeps the score on the same cosine scale as a hit and does not favour
        labels that merely have more entries. Hits without a label are skipped.
        """
        best: dict[str, float] = {}
        for hit in self.retrieve(query, k=k, where=where):
            if hit.label is not None and hit.score > best.get(hit.label, float("-inf")):
                best[hit.label] = hit.score
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))

    def __repr__(self) -> str:
        return f"MultilingualRetriever({self.store!r})"


def cap_per_document(hits: list[Hit], cap: int) -> list[Hit]:
    """``hits`` in order, keeping at most ``cap`` per document (``doc_id`` metadata, else the hit's id)."""
    seen: dict[tuple[str, str], int] = {}
    kept = []
    for hit in hits:
        doc_id = hit.metadata.get("doc_id")
        doc = ("doc", str(doc_id)) if doc_id is not None else ("id", hit.id)
        if seen.get(doc, 0) < cap:
            seen[doc] = seen.get(doc, 0) + 1
            kept.append(hit)
    return kept
