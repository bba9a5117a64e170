"""ChromaDB-backed vector store for knowledge-base records, filled only with our encoder's vectors.

Embedded by default (``chromadb.PersistentClient`` on ``$MLRET_HOME/db``, i.e. the folder given by
:func:`mlret_rag.bundled.cache_dir` plus ``db``), or a Chroma server (``chromadb.HttpClient``) when
``host`` is given. Collections use cosine space and record the encoder that filled them in their
metadata (keys ``mlret_encoder``, ``mlret_fingerprint``, ``mlret_dimension``, ``mlret_prompts``,
``mlret_model_path`` and, when the encoder has one, ``mlret_backend``); opening one with an encoder of a
different fingerprint raises :class:`~mlret_rag.errors.EncoderMismatchError`.

Chroma's default embedding function is never used: collections are opened with
``embedding_function=None`` and every insert and query passes vectors.

Scores: ``Hit.score`` is the cosine similarity ``1 - chroma_cosine_distance`` (higher is better, at
most 1); for e5 models it typically sits between 0.7 and 0.9.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import EncoderMismatchError, MlretError, StoreConnectionError
from .kb import RESERVED_METADATA_PREFIX, KBRecord, load_kb

if TYPE_CHECKING:
    from .encoder import MultilingualEncoder

DEFAULT_COLLECTION = "mlret"
DEFAULT_BATCH_SIZE = 256
HASH_KEY = "mlret_hash"


class MissingCollectionError(MlretError, LookupError):
    """The collection asked for does not exist (and was not to be created)."""


class StoreClosedError(MlretError, RuntimeError):
    """The store was used after :meth:`ChromaStore.close`."""


@dataclass(frozen=True)
class Hit:
    """One retrieved record. ``score`` is cosine similarity (higher is better); ``metadata`` holds the
    record's own metadata plus ``lang`` when known."""

    id: str
    text: str
    label: str | None
    score: float
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AddResult:
    """What :meth:`ChromaStore.add` did: ``added`` new ids, ``updated`` changed ones, left ``unchanged``."""

    added: int
    updated: int
    unchanged: int

    @property
    def encoded(self) -> int:
        """Records that were encoded and written in this call."""
        return self.added + self.updated


def default_db_path() -> Path:
    """Folder of the default embedded database: ``$MLRET_HOME/db`` (or the user cache dir's ``db``)."""
    from .bundled import cache_dir

    return cache_dir() / "db"


class ChromaStore:
    """A Chroma collection of knowledge-base records embedded by ``encoder``.

    Args:
        encoder: the :class:`~mlret_rag.MultilingualEncoder` whose document vectors fill the collection.
        path: folder of an embedded database (default :func:`default_db_path`); not with ``host``.
        host: host name of a Chroma server; switches to the HTTP client.
        port: port of the Chroma server (default 8000).
        collection: collection name (3-512 characters of ``[a-zA-Z0-9._-]``).
        auth_token: sent as ``Authorization: Bearer <token>`` to a server.
        batch_size: records encoded and committed per step (default 256, capped below the client's
            maximum batch size); a killed run loses at most one batch.
        show_progress_bar: show a progress bar while adding records.
        create: create the collection when missing; with ``False`` a missing collection is an error.

    Raises:
        StoreConnectionError: the server does not answer (message names host:port).
        EncoderMismatchError: the collection was filled by a different encoder or uses another metric.
    """

    def __init__(
        self,
        encoder: MultilingualEncoder,
        *,
        path: str | os.PathLike[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        collection: str = DEFAULT_COLLECTION,
        auth_token: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool = True,
        create: bool = True,
    ) -> None:
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.encoder = encoder
        self.show_progress_bar = show_progress_bar
        self.collection_name = collection
        self._closed = False
        self._client, self.location = open_client(path=path, host=host, port=port, auth_token=auth_token)
        try:
            with self._guard():
                limit = int(self._client.get_max_batch_size())
                self._collection = self._open_collection(collection, create=create)
        except BaseException:
            self.close()
            raise
        self.batch_size = max(1, min(batch_size or DEFAULT_BATCH_SIZE, limit - 1))

    # ---------------------------------------------------------------------------------------------
    def _open_collection(self, name: str, *, create: bool) -> Any:
        from chromadb.errors import NotFoundError

        wanted = encoder_metadata(self.encoder)
        try:
            col = self._client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            if not create:
                raise MissingCollectionError(
                    f"{self.location} has no collection {name!r}; index a knowledge base first "
                    "(mlret index --kb FILE)"
                ) from None
            col = self._client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, metadata=wanted, embedding_function=None
            )
        check_collection(col, wanted, where=f"{self.location} collection {name!r}")
        return col

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn transport failures of a server client into :class:`StoreConnectionError`."""
        if self._closed:
            raise StoreClosedError(f"this store ({self.location}, collection {self.collection_name!r}) is closed")
        with connection_errors(self.location, remote=self._remote):
            yield

    def close(self) -> None:
        """Release the Chroma client (for an embedded database, its SQLite and index files); idempotent.

        Other stores open on the same database keep working: Chroma counts the clients of one database.
        """
        if not self._closed:
            self._closed = True
            _close_client(self._client)

    def __enter__(self) -> ChromaStore:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _remote(self) -> bool:
        return not self.location.startswith("embedded:")

    @property
    def info(self) -> dict[str, Any]:
        """The collection's recorded encoder (name, fingerprint, dimension, prompts, model path)."""
        return decode_info(self._collection.metadata or {})

    # ---------------------------------------------------------------------------------------------
    def add(self, records: Iterable[KBRecord] | Iterable[Mapping[str, Any]]) -> AddResult:
        """Encode and store the records whose id is new or whose content changed; skip the rest.

        Each batch is committed before the next is encoded, so a run killed half-way and started again
        ends with exactly these records and does not re-encode the ones already stored.
        """
        records = list(records)
        if not all(isinstance(r, KBRecord) for r in records):
            records = load_kb(records)
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"duplicate id {dup!r} in the records to add")
        stored = self._stored_hashes(ids)
        todo = [r for r in records if stored.get(r.id) != r.content_hash]
        changed = {r.id for r in todo if r.id in stored}
        from tqdm.auto import tqdm

        with tqdm(
            total=len(todo), desc="indexing", unit="rec", disable=not self.show_progress_bar or not todo
        ) as bar:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                vectors = self.encoder.encode_documents([r.text for r in batch])
                with self._guard():
                    stale = [r.id for r in batch if r.id in changed]
                    if stale:  # delete first: Chroma merges metadata on update, we want a clean replace
                        self._collection.delete(ids=stale)
                    self._collection.add(
                        ids=[r.id for r in batch],
                        embeddings=vectors,
                        documents=[r.text for r in batch],
                        metadatas=[_to_chroma_metadata(r) for r in batch],
                    )
                bar.update(len(batch))
        return AddResult(
            added=len(todo) - len(changed), updated=len(changed), unchanged=len(records) - len(todo)
        )

    def _stored_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._guard():
            for start in range(0, len(ids), self.batch_size):
                got = self._collection.get(
                    ids=list(ids[start : start + self.batch_size]), include=["metadatas"]
                )
                for rid, meta in zip(got["ids"], got["metadatas"] or []):
                    out[rid] = (meta or {}).get(HASH_KEY, "")
        return out

    def delete(self, ids: Sequence[str]) -> None:
        """Remove records by id; unknown ids are ignored."""
        ids = list(ids)
        with self._guard():
            for start in range(0, len(ids), self.batch_size):
                self._collection.delete(ids=ids[start : start + self.batch_size])

    def count(self) -> int:
        """Number of records in the collection."""
        with self._guard():
            return int(self._collection.count())

    def get(self, ids: Sequence[str]) -> list[KBRecord]:
        """The stored records with these ids, in the order asked; unknown ids are left out."""
        ids = list(ids)
        found: dict[str, KBRecord] = {}
        with self._guard():
            for start in range(0, len(ids), self.batch_size):
                got = self._collection.get(
                    ids=ids[start : start + self.batch_size], include=["documents", "metadatas"]
                )
                for rid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                    label, lang, user = _from_chroma_metadata(meta)
                    found[rid] = KBRecord(id=rid, text=doc or "", label=label, lang=lang, metadata=user)
        return [found[i] for i in ids if i in found]

    def ids(self) -> list[str]:
        """All ids in the collection."""
        with self._guard():
            return list(self._collection.get(include=[])["ids"])

    def query(
        self, vectors: np.ndarray | Sequence[Sequence[float]], k: int = 5, where: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        """The ``k`` nearest records to each query vector, best first (``score`` = cosine similarity)."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.encoder.dimension:
            raise ValueError(f"vectors must have shape (n, {self.encoder.dimension}), got {vectors.shape}")
        if len(vectors) == 0:
            return []
        with self._guard():
            # Chroma returns fewer hits when the collection is smaller than k; no count() round trip,
            # which costs more than the search itself at 100k records.
            res = self._collection.query(
                query_embeddings=vectors,
                n_results=k,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        out = []
        for ids, docs, metas, dists in zip(res["ids"], res["documents"], res["metadatas"], res["distances"]):
            hits = []
            for rid, doc, meta, dist in zip(ids, docs, metas, dists):
                label, lang, user = _from_chroma_metadata(meta)
                if lang is not None:
                    user = {**user, "lang": lang}
                hits.append(Hit(id=rid, text=doc or "", label=label, score=1.0 - float(dist), metadata=user))
            out.append(hits)
        return out

    def __repr__(self) -> str:
        return f"ChromaStore({self.location}, collection={self.collection_name!r}, encoder={self.encoder.model_name!r})"


# -------------------------------------------------------------------------------------------------
def open_client(
    *,
    path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    auth_token: str | None = None,
) -> tuple[Any, str]:
    """A Chroma client and a location string (``embedded:<path>`` or ``host:port``) for messages."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host is None:
        if port is not None or auth_token is not None:
            raise ValueError("port and auth_token need host (a Chroma server); give --host or drop them")
        folder = Path(path) if path is not None else default_db_path()
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"database path {folder} is a file, expected a folder")
        folder.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(folder), settings=settings), f"embedded:{folder}"
    if path is not None:
        raise ValueError("give either path (embedded database) or host/port (Chroma server), not both")
    port = 8000 if port is None else port
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
    location = f"{host}:{port}"
    headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else None
    try:
        with connection_errors(location, remote=True):
            client = chromadb.HttpClient(host=host, port=port, headers=headers, settings=settings)
            client.heartbeat()
    except StoreConnectionError:
        raise
    except Exception as exc:  # something answered, but not a Chroma server we can talk to
        detail = " ".join(str(exc).split())[:160]
        raise StoreConnectionError(f"{location} did not answer as a Chroma server: {detail}") from exc
    return client, location


@contextlib.contextmanager
def connection_errors(location: str, *, remote: bool) -> Iterator[None]:
    """Re-raise a server client's connection failures as :class:`StoreConnectionError` naming ``location``."""
    if not remote:
        yield
        return
    import httpx
    from chromadb.errors import AuthorizationError, ChromaAuthError

    try:
        yield
    except httpx.TransportError as exc:
        raise StoreConnectionError(f"cannot reach the Chroma server at {location}: {exc}") from exc
    except (AuthorizationError, ChromaAuthError) as exc:
        raise StoreConnectionError(f"the Chroma server at {location} refused access: {exc}") from exc
    except ValueError as exc:
        if "connect" in str(exc).lower():
            raise StoreConnectionError(
                f"cannot reach the Chroma server at {location} (is `chroma run --host ... --port ...` running?)"
            ) from exc
        raise


def encoder_metadata(encoder: MultilingualEncoder) -> dict[str, Any]:
    """Collection metadata describing ``encoder``."""
    meta: dict[str, Any] = {
        "mlret_encoder": encoder.model_name,
        "mlret_fingerprint": encoder.fingerprint,
        "mlret_dimension": int(encoder.dimension),
        "mlret_prompts": json.dumps(encoder.prompts, sort_keys=True, ensure_ascii=False),
        "mlret_model_path": str(encoder.model_path) if encoder.model_path else "",
    }
    backend = getattr(encoder, "backend", None)
    if isinstance(backend, str):
        meta["mlret_backend"] = backend
    return meta


def decode_info(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Collection metadata as ``{"encoder", "fingerprint", "dimension", "prompts", "model_path", ...}``."""
    info = {k[len("mlret_") :]: v for k, v in meta.items() if k.startswith("mlret_")}
    if isinstance(info.get("prompts"), str):
        with contextlib.suppress(ValueError):
            info["prompts"] = json.loads(info["prompts"])
    return info


def check_collection(col: Any, wanted: Mapping[str, Any], *, where: str) -> None:
    """Refuse a collection that uses another metric or was filled by another encoder."""
    space = ((col.configuration or {}).get("hnsw") or {}).get("space") or (col.metadata or {}).get(
        "hnsw:space"
    )
    if space and space != "cosine":
        raise EncoderMismatchError(f"{where} uses {space!r} distance; mlret-rag needs a cosine collection")
    meta = col.metadata or {}
    if "mlret_fingerprint" not in meta:
        raise EncoderMismatchError(
            f"{where} was not created by mlret-rag (no encoder recorded); use another collection name"
        )
    if (
        meta["mlret_fingerprint"] != wanted["mlret_fingerprint"]
        or meta.get("mlret_dimension") != wanted["mlret_dimension"]
    ):
        raise EncoderMismatchError(
            f"{where} was indexed with encoder {meta.get('mlret_encoder')!r} (fingerprint "
            f"{meta['mlret_fingerprint']}, dim {meta.get('mlret_dimension')}, prompts {meta.get('mlret_prompts')}), "
            f"but it is opened with {wanted['mlret_encoder']!r} (fingerprint {wanted['mlret_fingerprint']}, dim "
            f"{wanted['mlret_dimension']}, prompts {wanted['mlret_prompts']}); re-index into a new collection or use the original model"
        )


def read_collection_info(
    *,
    path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    collection: str = DEFAULT_COLLECTION,
    auth_token: str | None = None,
) -> dict[str, Any] | None:
    """The encoder recorded in a collection, without loading any model (``None`` if it does not exist)."""
    from chromadb.errors import NotFoundError

    if host is None:
        folder = Path(path) if path is not None else default_db_path()
        if not folder.is_dir():
            return None
    client, location = open_client(path=path, host=host, port=port, auth_token=auth_token)
    try:
        with connection_errors(location, remote=host is not None):
            try:
                col = client.get_collection(collection, embedding_function=None)
            except (NotFoundError, ValueError):
                return None
        return decode_info(col.metadata or {})
    finally:
        _close_client(client)


def _close_client(client: Any) -> None:
    """Release one reference to a Chroma client's shared system (``close`` exists from chromadb 1.5)."""
    close = getattr(client, "close", None)
    if close is not None:
        close()


def _to_chroma_metadata(rec: KBRecord) -> dict[str, Any]:
    meta: dict[str, Any] = dict(rec.metadata)
    if rec.label is not None:
        meta["label"] = rec.label
    if rec.lang is not None:
        meta["lang"] = rec.lang
    meta[HASH_KEY] = rec.content_hash
    return meta


def _from_chroma_metadata(meta: Mapping[str, Any] | None) -> tuple[str | None, str | None, dict[str, Any]]:
    meta = dict(meta or {})
    label = meta.pop("label", None)
    lang = meta.pop("lang", None)
    user = {k: v for k, v in meta.items() if not k.startswith(RESERVED_METADATA_PREFIX)}
    return label, lang, user


def stored_metadata(store: ChromaStore, key: str) -> dict[str, Any]:
    """``{id: metadata[key]}`` for every stored record whose metadata has ``key``, read in pages.

    Used by document sync (:func:`mlret_rag.documents.sync_documents`) to find the chunks of each
    document without reading texts or vectors.
    """
    out: dict[str, Any] = {}
    with store._guard():
        offset = 0
        while True:
            got = store._collection.get(include=["metadatas"], limit=store.batch_size * 8, offset=offset)
            for rid, meta in zip(got["ids"], got["metadatas"] or []):
                if meta and key in meta:
                    out[rid] = meta[key]
            if len(got["ids"]) < store.batch_size * 8:
                return out
            offset += len(got["ids"])
