"""ChromaDB-backed vector store for knowledge-base records, filled only with our encoder's vectors.

Embedded by default (``chromadb.PersistentClient`` on ``$MLRET_HOME/db``, i.e. the folder given by
:func:`mlret_rag.cache.cache_dir` plus ``db``), or a Chroma server (``chromadb.HttpClient``) when
``host`` is given, or a chromadb client of your own; where the store lives is one
:class:`~mlret_rag.location.StoreLocation` value (``location=``, or its fields as keywords). Collections use cosine space and record the encoder that filled them in their
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
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._writelock import DEFAULT_LOCK_TIMEOUT
from .errors import (
    DiskFullError,
    EncoderMismatchError,
    KnowledgeBaseError,
    MissingCollectionError,
    MlretError,
    StoreClosedError,
)
from .kb import RESERVED_METADATA_PREFIX, KBRecord, load_kb, record_source
from .location import (  # noqa: F401  (DEFAULT_*, default_db_path: importable from here as before)
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    StoreLocation,
    connection_errors,
    default_db_path,
    retrying,
)
from .location import one_line as _one_line

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .encoder import MultilingualEncoder
    from .location import LocationKeywords

DEFAULT_COLLECTION = "mlret"
DEFAULT_BATCH_SIZE = 256
HASH_KEY = "mlret_hash"



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


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`ChromaStore.verify` found. ``ok`` when no problem and no damaged record was found.

    ``missing_vector``: ids whose vector cannot be read back; ``bad_vector``: wrong dimension or not
    finite; ``hash_mismatch``: stored text/metadata differ from the stored content hash (or it is
    missing); ``unreachable`` (full check only): a search with the record's own vector does not find it.
    """

    location: str
    collection: str
    count: int
    checked: int
    problems: tuple[str, ...] = ()
    missing_vector: tuple[str, ...] = ()
    bad_vector: tuple[str, ...] = ()
    hash_mismatch: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()

    @property
    def damaged(self) -> tuple[str, ...]:
        """Ids of all damaged records (each once), the ones :meth:`ChromaStore.repair` re-encodes."""
        return tuple(dict.fromkeys(self.missing_vector + self.bad_vector + self.hash_mismatch + self.unreachable))

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damaged

    def summary(self) -> str:
        """One line: ``checked N of M records: ...``."""
        head = f"{self.location} collection {self.collection!r}: checked {self.checked} of {self.count} records"
        parts = [f"{len(v)} {name}" for name, v in (
            ("without a vector", self.missing_vector), ("with a bad vector", self.bad_vector),
            ("whose content does not match its hash", self.hash_mismatch),
            ("not found by their own vector", self.unreachable)) if v]
        parts += list(self.problems)
        return head + (": " + "; ".join(parts) if parts else ", no damage found")


class ChromaStore:
    """A Chroma collection of knowledge-base records embedded by ``encoder``.

    Args:
        encoder: the :class:`~mlret_rag.MultilingualEncoder` whose document vectors fill the collection.
        location: where the database is, a :class:`~mlret_rag.StoreLocation` (default: the embedded
            database in :func:`default_db_path`). Its fields are accepted as keywords instead
            (``path=``, ``host=``, ``port=``, ``ssl=``, ``headers=``, ``auth_token=``, ``tenant=``,
            ``database=``, ``client=``, ``timeout=``, ``connect_timeout=``, ``retries=``), not both.
        collection: collection name (3-512 characters of ``[a-zA-Z0-9._-]``).
        batch_size: records encoded and committed per step (default 256, capped below the client's
            maximum batch size); a killed run loses at most one batch.
        show_progress_bar: show a progress bar while adding records.
        create: create the collection when missing; with ``False`` a missing collection is an error.
        lock_timeout: embedded mode: seconds a write waits while another process writes to the same
            database, then :class:`~mlret_rag.errors.StoreBusyError` names that process (default 30).

    Attributes:
        store_location: the :class:`~mlret_rag.StoreLocation` value.
        location: the same as a string for messages (``embedded:<path>``, ``host:port``, ``client:...``).

    Raises:
        StoreConnectionError: the server does not answer (message names host:port).
        EncoderMismatchError: the collection was filled by a different encoder or uses another metric.
        ValueError: an invalid location (see :class:`~mlret_rag.StoreLocation`) or argument.
    """

    def __init__(
        self,
        encoder: MultilingualEncoder,
        location: StoreLocation | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        batch_size: int | None = None,
        show_progress_bar: bool = True,
        create: bool = True,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        **shorthand: Unpack[LocationKeywords],
    ) -> None:
        where = StoreLocation.resolve(location, **shorthand)
        if not isinstance(lock_timeout, (int, float)) or isinstance(lock_timeout, bool) or lock_timeout < 0:
            raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.encoder = encoder
        self.show_progress_bar = show_progress_bar
        self.collection_name = collection
        self._closed = False
        self._closed_because = ""
        self.store_location = where
        self.location = where.describe()
        self.retries = where.retries
        self._remote = where.remote
        self._folder = where.folder  # the embedded database's folder (also an injected PersistentClient's)
        self._owns_client = where.client is None  # close() never closes a client it was given
        self._col: Any = None
        self._created = False  # this store created the collection (dropped again if the first add fails)
        self._client = where.open_client(lock_timeout=float(lock_timeout))
        self.timeout = where.read_timeout
        self._writer = None
        if not self._remote and self._folder is not None:
            from ._writelock import WriterLock

            self._writer = WriterLock(self._folder, timeout=float(lock_timeout))
        try:
            with self._guard():
                limit = int(self._read(self._client.get_max_batch_size))
                self.max_batch_size = limit  # the client's own cap on one add
                self._col = self._open_collection(collection, create=create)
        except BaseException:
            self.close()
            raise
        self.batch_size = max(1, min(batch_size or DEFAULT_BATCH_SIZE, limit - 1))

    # ---------------------------------------------------------------------------------------------
    def _open_collection(self, name: str, *, create: bool) -> Any:
        from chromadb.errors import NotFoundError

        wanted = encoder_metadata(self.encoder)
        try:
            col = self._read(lambda: self._client.get_collection(name, embedding_function=None))
        except (NotFoundError, ValueError):
            if not create:
                raise MissingCollectionError(
                    f"{self.location} has no collection {name!r}; index a knowledge base first "
                    "(mlret index --kb FILE)"
                ) from None
            with self._writing():
                before = {c.name for c in self._client.list_collections()}
                col = self._client.get_or_create_collection(
                    name, configuration={"hnsw": {"space": "cosine"}}, metadata=wanted, embedding_function=None
                )
                self._created = name not in before
        check_collection(col, wanted, where=f"{self.location} collection {name!r}")
        return col

    @property
    def collection(self) -> Any:
        """The underlying ``chromadb`` collection, for bulk work this class does not wrap (writes through it
        skip the encoder, metadata and writer-lock checks)."""
        return self._collection

    @property
    def _collection(self) -> Any:
        """The Chroma collection; created again on use after a failed first run dropped it."""
        if self._col is None:
            with self._guard():
                self._col = self._open_collection(self.collection_name, create=True)
        return self._col

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the embedded database's writer lock (other processes wait; server mode: nothing)."""
        return self._writer.hold() if self._writer is not None else contextlib.nullcontext()

    def _read(self, call: Any) -> Any:
        """Run an idempotent call, retried with backoff when a server connection drops or is refused."""
        if not self._remote or self.retries == 0:
            return call()
        return retrying(self.retries, self.location)(call)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn transport failures of a server client into :class:`StoreConnectionError`."""
        if self._closed:
            raise StoreClosedError(f"this store ({self.location}, collection {self.collection_name!r}) is closed"
                                   + self._closed_because)
        with connection_errors(self.location, remote=self._remote, timeout=getattr(self, "timeout", None)):
            try:
                yield
            except Exception as exc:
                full = None if self._folder is None else disk_full_error(self._folder, exc)
                if full is not None:
                    # Chroma's failed write keeps its SQLite transaction open in this process, so the next
                    # write on this database would wait for it for good: release the client now.
                    self.close()
                    self._closed_because = " (after the disk filled up: open a new store once space is freed)"
                    raise full from exc
                raise

    def close(self) -> None:
        """Release the Chroma client (for an embedded database, its SQLite and index files); idempotent.

        Other stores open on the same database keep working: Chroma counts the clients of one database.
        A client given as ``client=`` is left open: it belongs to the caller.
        """
        if not self._closed:
            self._closed = True
            if self._owns_client:
                _close_client(self._client)

    def __enter__(self) -> ChromaStore:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        with self._writing():
            try:
                return self._add(records, ids)
            except BaseException:
                self._drop_if_created_empty()
                raise

    def _drop_if_created_empty(self) -> None:
        """After a failed first run, remove the collection this store created if nothing was committed."""
        if not self._created or self._col is None:
            return
        with contextlib.suppress(Exception):  # the server may have dropped the connection: retried reads
            if int(self._read(self._col.count)) == 0:
                self._read(lambda: self._client.delete_collection(self.collection_name))
                self._col = None
                self._created = False

    def _add(self, records: list[KBRecord], ids: list[str]) -> AddResult:
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
                self._write_batch(batch, vectors, stale=[r.id for r in batch if r.id in changed])
                bar.update(len(batch))
        return AddResult(
            added=len(todo) - len(changed), updated=len(changed), unchanged=len(records) - len(todo)
        )

    def _write_batch(self, batch: Sequence[KBRecord], vectors: Any, *, stale: Sequence[str] = ()) -> None:
        """Commit one batch; a refusal by the store names the record (its file:line when known)."""
        from chromadb.errors import ChromaError

        try:
            with self._guard():
                old = None
                if stale:  # delete first: Chroma merges metadata on update, we want a clean replace
                    # not the vectors: repair replaces records whose vectors are lost
                    old = self._collection.get(ids=list(stale), include=["documents", "metadatas"])
                    self._collection.delete(ids=list(stale))
                try:
                    self._collection.add(
                        ids=[r.id for r in batch],
                        embeddings=vectors,
                        documents=[r.text for r in batch],
                        metadatas=[_to_chroma_metadata(r) for r in batch],
                    )
                except BaseException:
                    if old is not None and old["ids"]:  # put back what was there: a failed replace loses nothing
                        self._collection.add(ids=old["ids"], embeddings=self.encoder.encode_documents(old["documents"]),
                                             documents=old["documents"], metadatas=old["metadatas"])
                    raise
        except MlretError:  # includes DiskFullError from the guard
            raise
        except Exception as exc:
            # chromadb raises its own errors, ValueError/TypeError, or a bare Exception for an HTTP
            # error status ("Payload too large"); anything else is not a refusal of these records.
            if isinstance(exc, (ChromaError, ValueError, TypeError)) or type(exc) is Exception:
                raise _refused(batch, exc) from exc
            raise

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the embedded database's writer lock across several calls (e.g. add, prune, check).

        Other processes' writes wait (at most ``lock_timeout``) until the block ends; reads never wait.
        Each write takes the lock by itself anyway; in server mode this does nothing.
        """
        with self._writing():
            yield

    def verify(self, *, ids: Sequence[str] | None = None, full: bool = True) -> VerifyReport:
        """Check the collection: encoder metadata intact, counts agree, every record has a readable vector
        of the right dimension; with ``full`` also that its stored hash matches its stored content and
        that a search with its own vector finds it. ``ids`` limits the record checks to those ids."""
        from .kb import content_hash

        problems: list[str] = []
        with self._guard():
            col = self._read(lambda: self._client.get_collection(self.collection_name, embedding_function=None))
            problems += _metadata_problems(col.metadata or {}, encoder_metadata(self.encoder))
            for _ in range(5):  # another writer (server mode) may add between the two reads: read until still
                count = int(self._read(col.count))
                all_ids = list(self._read(lambda: col.get(include=[]))["ids"])
                if int(self._read(col.count)) == count:
                    break
            if len(all_ids) != count or len(set(all_ids)) != len(all_ids):
                problems.append(f"count() says {count} records but {len(set(all_ids))} distinct ids are stored")
            wanted = list(dict.fromkeys(ids)) if ids is not None else all_ids
            present = set(all_ids)
            missing_ids = [i for i in wanted if i not in present]
            if missing_ids:
                problems.append(f"{len(missing_ids)} of the ids asked for are not stored (e.g. {missing_ids[0]!r})")
            wanted = [i for i in wanted if i in present]
            dim = int(self.encoder.dimension)
            missing, bad, mismatch, unreachable = [], [], [], []
            for start in range(0, len(wanted), self.batch_size):
                chunk = wanted[start : start + self.batch_size]
                vectors, unreadable = self._vectors(col, chunk)
                missing += unreadable
                good_ids, good_vecs = [], []
                for rid in chunk:
                    vec = vectors.get(rid)
                    if vec is None:
                        if rid not in unreadable:
                            missing.append(rid)
                        continue
                    vec = np.asarray(vec, dtype=np.float32)
                    if vec.shape != (dim,) or not np.isfinite(vec).all() or not np.any(vec):
                        bad.append(rid)
                    else:
                        good_ids.append(rid)
                        good_vecs.append(vec)
                if not full:
                    continue
                got = self._read(lambda chunk=chunk: col.get(ids=chunk, include=["documents", "metadatas"]))
                for rid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                    label, lang, user = _from_chroma_metadata(meta)
                    if (meta or {}).get(HASH_KEY) != content_hash(doc or "", label, lang, user):
                        mismatch.append(rid)
                if good_vecs:
                    res = self._read(lambda v=good_vecs: col.query(
                        query_embeddings=np.stack(v), n_results=min(3, count), include=["distances"]))
                    for rid, hit_ids, dists in zip(good_ids, res["ids"], res["distances"]):
                        if rid not in hit_ids and not (dists and dists[0] <= 1e-4):
                            unreachable.append(rid)
        return VerifyReport(
            location=self.location, collection=self.collection_name, count=count, checked=len(wanted),
            problems=tuple(problems), missing_vector=tuple(missing), bad_vector=tuple(bad),
            hash_mismatch=tuple(mismatch), unreachable=tuple(unreachable),
        )

    def _vectors(self, col: Any, ids: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Stored vectors by id, and the ids whose vector Chroma cannot read (found by bisection)."""
        from chromadb.errors import ChromaError

        try:
            got = self._read(lambda: col.get(ids=ids, include=["embeddings"]))
        except (ChromaError, RuntimeError):
            if len(ids) == 1:
                return {}, list(ids)
            half = len(ids) // 2
            left, bad_left = self._vectors(col, ids[:half])
            right, bad_right = self._vectors(col, ids[half:])
            return {**left, **right}, bad_left + bad_right
        embs = got.get("embeddings")
        embs = [None] * len(got["ids"]) if embs is None else embs
        return dict(zip(got["ids"], embs)), []

    def repair(self, report: VerifyReport | None = None) -> int:
        """Re-encode and rewrite every damaged record of ``report`` (default: a fresh full :meth:`verify`)
        from its stored text and metadata; returns how many were rewritten. The content hash is
        recomputed from what is stored, so a later ``mlret index`` of the file replaces anything whose
        text was damaged."""
        with self._writing():
            report = report if report is not None else self.verify()
            damaged = list(report.damaged)
            done = 0
            for start in range(0, len(damaged), self.batch_size):
                chunk = damaged[start : start + self.batch_size]
                records = self.get(chunk)
                if not records:
                    continue
                vectors = self.encoder.encode_documents([r.text for r in records])
                self._write_batch(records, vectors, stale=[r.id for r in records])
                done += len(records)
        return done

    def _stored_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._guard():
            for start in range(0, len(ids), self.batch_size):
                chunk = list(ids[start : start + self.batch_size])
                got = self._read(lambda chunk=chunk: self._collection.get(ids=chunk, include=["metadatas"]))
                for rid, meta in zip(got["ids"], got["metadatas"] or []):
                    out[rid] = (meta or {}).get(HASH_KEY, "")
        return out

    def delete(self, ids: Sequence[str]) -> None:
        """Remove records by id; unknown ids are ignored."""
        ids = list(ids)
        with self._writing(), self._guard():
            for start in range(0, len(ids), self.batch_size):
                self._collection.delete(ids=ids[start : start + self.batch_size])

    def count(self) -> int:
        """Number of records in the collection."""
        with self._guard():
            return int(self._read(lambda: self._collection.count()))

    def get(self, ids: Sequence[str]) -> list[KBRecord]:
        """The stored records with these ids, in the order asked; unknown ids are left out."""
        ids = list(ids)
        found: dict[str, KBRecord] = {}
        with self._guard():
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start : start + self.batch_size]
                got = self._read(
                    lambda chunk=chunk: self._collection.get(ids=chunk, include=["documents", "metadatas"])
                )
                for rid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                    label, lang, user = _from_chroma_metadata(meta)
                    found[rid] = KBRecord(id=rid, text=doc or "", label=label, lang=lang, metadata=user)
        return [found[i] for i in ids if i in found]

    def metadata_values(self, key: str) -> dict[str, Any]:
        """``{id: metadata[key]}`` for every stored record whose metadata has ``key``, read in pages (no
        texts or vectors; reads are retried like every read). Document sync finds each document's chunks so."""
        out: dict[str, Any] = {}
        page = self.batch_size * 8
        with self._guard():
            offset = 0
            while True:
                got = self._read(lambda offset=offset: self._collection.get(include=["metadatas"], limit=page,
                                                                            offset=offset))
                for rid, meta in zip(got["ids"], got["metadatas"] or []):
                    if meta and key in meta:
                        out[rid] = meta[key]
                if len(got["ids"]) < page:
                    return out
                offset += len(got["ids"])

    def ids(self) -> list[str]:
        """All ids in the collection."""
        with self._guard():
            return list(self._read(lambda: self._collection.get(include=[]))["ids"])

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
            res = self._read(
                lambda: self._collection.query(
                    query_embeddings=vectors,
                    n_results=k,
                    where=where,
                    include=["documents", "metadatas", "distances"],
                )
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
def open_client(location: StoreLocation | None = None, /, **shorthand: Unpack[LocationKeywords]) -> tuple[Any, str]:
    """A Chroma client and a location string (``embedded:<path>`` or ``host:port``) for messages.

    ``location`` or its fields as keywords, as for :class:`ChromaStore`; see
    :meth:`StoreLocation.open_client <mlret_rag.StoreLocation.open_client>` for the timeouts and errors.
    """
    where = StoreLocation.resolve(location, **shorthand)
    return where.open_client(), where.describe()


_DISK_FULL = re.compile(r"disk is full|no space left|ENOSPC|code: 13\b|quota exceeded", re.IGNORECASE)
_LOW_SPACE = 64 << 20  # below this much free space an unexplained write failure is put down to space


def disk_full_error(folder: Path, exc: BaseException) -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``folder`` and its free space when ``exc`` means the disk is full
    (SQLite's "database or disk is full", ENOSPC, or a failed write with almost no space left)."""
    import errno
    import shutil

    detail = _one_line(exc)
    says_full = bool(_DISK_FULL.search(detail)) or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        usage = None
    low = usage is not None and usage.free < _LOW_SPACE and ("compaction" in detail or "apply logs" in detail)
    if not (says_full or low):
        return None
    space = f"{_size(usage.free)} free of {_size(usage.total)}" if usage is not None else "free space unknown"
    return DiskFullError(
        f"the file system of {folder} is full ({space}); what was committed stays stored: free some space "
        f"and run the same command again (chroma: {detail})"
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _refused(batch: Sequence[KBRecord], exc: BaseException) -> KnowledgeBaseError:
    """The store's refusal of a batch, named by the record it concerns (its file:line when known)."""
    detail = _one_line(exc)
    found = re.search(r"at index (\d+)", detail)
    index = int(found.group(1)) if found else (0 if len(batch) == 1 else None)
    if index is not None and 0 <= index < len(batch):
        rec = batch[index]
        detail = re.sub(r"\s*at index \d+", "", detail)
        where = record_source(rec) or f"record {rec.id!r}"
        return KnowledgeBaseError(f"{where}: Chroma refused record {rec.id!r}: {detail}")
    first, last = batch[0], batch[-1]
    return KnowledgeBaseError(
        f"{record_source(first) or repr(first.id)} .. {record_source(last) or repr(last.id)}: Chroma refused a batch of "
        f"{len(batch)} records (ids {first.id!r} .. {last.id!r}): {detail}"
    )


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


def _metadata_problems(meta: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What is wrong with a collection's recorded encoder metadata (empty when intact)."""
    out = []
    for key in ("mlret_encoder", "mlret_fingerprint", "mlret_dimension", "mlret_prompts"):
        if key not in meta:
            out.append(f"collection metadata lacks {key!r}")
    if "mlret_fingerprint" in meta and meta["mlret_fingerprint"] != wanted["mlret_fingerprint"]:
        out.append(f"collection fingerprint {meta['mlret_fingerprint']} differs from the encoder's {wanted['mlret_fingerprint']}")
    if "mlret_dimension" in meta and meta["mlret_dimension"] != wanted["mlret_dimension"]:
        out.append(f"collection dimension {meta['mlret_dimension']!r} differs from the encoder's {wanted['mlret_dimension']}")
    if "mlret_prompts" in meta:
        try:
            prompts = json.loads(meta["mlret_prompts"])
        except (TypeError, ValueError):
            prompts = None
        if not isinstance(prompts, dict):
            out.append("collection metadata 'mlret_prompts' is not a JSON object")
    return out


def read_collection_info(
    location: StoreLocation | None = None,
    /,
    *,
    collection: str = DEFAULT_COLLECTION,
    **shorthand: Unpack[LocationKeywords],
) -> dict[str, Any] | None:
    """The encoder recorded in a collection, without loading any model (``None`` if it does not exist);
    ``location`` or its fields as keywords, as for :class:`ChromaStore`. A missing embedded folder is
    not created."""
    from chromadb.errors import NotFoundError

    where = StoreLocation.resolve(location, **shorthand)
    if where.client is None and where.host is None and not where.folder.is_dir():  # type: ignore[union-attr]
        return None
    client = where.open_client()
    try:
        with connection_errors(where.describe(), remote=where.remote, timeout=where.read_timeout):
            try:
                col = client.get_collection(collection, embedding_function=None)
            except (NotFoundError, ValueError):
                return None
        return decode_info(col.metadata or {})
    finally:
        if where.client is None:
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
