"""Knowledge-base and query records, their loaders, and validation.

Sources: a JSON Lines file (``.jsonl``/``.json``, one object per line, blank lines skipped), a CSV file
(header row; columns ``id,text,label,lang`` for KB records, any other non-empty column becomes a string
metadata value; for queries ``relevant_ids`` is ``|``-separated), a Hugging Face ``datasets.Dataset``, or
an iterable of dicts. Everything is validated before a caller writes anything: the first problem raises
:class:`~mlret_rag.errors.KnowledgeBaseError` with the message ``"{file}:{line}: {problem}"`` (rows of a
dataset or iterable are named ``<dataset>:{row}``, counting from 1).

A KB record without an ``id`` gets ``"kb-" + 16 hex digits`` of a hash of its content (text, label,
lang, metadata), so loading and indexing the same file twice gives the same ids.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import unicodedata
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KnowledgeBaseError

KB_FIELDS = ("id", "text", "label", "lang", "metadata")
QUERY_FIELDS = ("text", "label", "lang", "relevant_ids", "source_id")
# Metadata keys the store uses for its own bookkeeping; user metadata may not use them.
RESERVED_METADATA_KEYS = frozenset({"label", "lang"})
RESERVED_METADATA_PREFIX = "mlret_"
# Chroma's own rules (chromadb 1.5.9): the Rust validator refuses empty keys and keys starting with
# "#" or "$" (rust/types/src/validators.rs, validate_metadata_key); the Python client refuses the key
# "chroma:document" (api/types.py), and the embedded executor silently drops every "chroma:" key on
# read (execution/executor/local.py). Integers beyond 64 bits come back as floats and NaN/infinity
# is dropped (embedded) or refused (server), so both are refused here rather than changed silently.
# Chroma sets no size limit per key or value; a server refuses request bodies over its payload limit,
# which the store reports for the batch's records.
CHROMA_RESERVED_KEY_PREFIXES = ("#", "$", "chroma:")
_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class KBRecord:
    """One knowledge-base entry: the text that is embedded, plus label, language and scalar metadata."""

    id: str
    text: str
    label: str | None = None
    lang: str | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Hash of everything stored for this record except its id; a changed hash means re-encode."""
        return content_hash(self.text, self.label, self.lang, self.metadata)


@dataclass(frozen=True)
class QueryRecord:
    """A question for training or evaluation; relevant = same ``label``, or the ids in ``relevant_ids``."""

    text: str
    label: str | None = None
    lang: str | None = None
    relevant_ids: tuple[str, ...] | None = None
    source_id: str | None = None


def is_contentless(text: str) -> bool:
    """True when nothing is left of ``text`` after removing control (Cc), format (Cf, e.g. zero-width
    space, BOM) and whitespace characters: such texts all embed to the same vector, so they are refused
    like empty strings."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


# Where each loaded record came from (``file:line`` or ``<dataset>:row``), kept beside the record rather
# than in it (a record's fields are its content, and ``asdict(record)`` must load again), and forgotten
# when the record is.
_SOURCES: dict[int, str] = {}


def _remember_source(rec: KBRecord, where: str) -> None:
    _SOURCES[id(rec)] = where
    weakref.finalize(rec, _SOURCES.pop, id(rec), None)


def record_source(rec: KBRecord) -> str | None:
    """``file:line`` (or ``<dataset>:row``) a record was loaded from by :func:`load_kb`, else ``None``."""
    return _SOURCES.get(id(rec))


def content_hash(text: str, label: str | None, lang: str | None, metadata: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over a canonical JSON form of a record's content."""
    blob = json.dumps(
        {"text": text, "label": label, "lang": lang, "metadata": dict(metadata)},
        sort_keys=True,
        ensure_ascii=False,
    ).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


# -------------------------------------------------------------------------------------------------
def as_kb_records(source: Any) -> list[KBRecord]:
    """KB records as given (a list of :class:`KBRecord`), or loaded and validated by :func:`load_kb`."""
    return _as_records(source, KBRecord, load_kb, allow_empty=False)


def as_query_records(source: Any) -> list[QueryRecord]:
    """Query records as given (an empty list stays empty for the caller to report), or loaded."""
    return _as_records(source, QueryRecord, load_queries, allow_empty=True)


def _as_records(source: Any, kind: type, loader: Any, *, allow_empty: bool) -> list[Any]:
    if hasattr(source, "__next__"):  # a generator or iterator: read it once
        source = list(source)
    if isinstance(source, (list, tuple)) and (source or allow_empty) and all(isinstance(x, kind) for x in source):
        return list(source)
    return list(loader(source))


def load_kb(source: Any) -> list[KBRecord]:
    """Load and validate knowledge-base records from a file path, a ``datasets.Dataset`` or dicts.

    Raises:
        KnowledgeBaseError: on the first malformed row, naming the place and the problem.
        FileNotFoundError: when a path does not exist.
    """
    records: list[KBRecord] = []
    seen: dict[str, str] = {}
    for where, row in _rows(source, csv_kind="kb"):
        rec = _kb_record(row, where)
        if rec.id in seen:
            raise KnowledgeBaseError(f"{where}: duplicate id {rec.id!r} (first seen at {seen[rec.id]})")
        seen[rec.id] = where
        records.append(rec)
    if not records:
        raise KnowledgeBaseError(f"{_name(source)}: no records (the knowledge base is empty)")
    return records


def load_queries(source: Any) -> list[QueryRecord]:
    """Load and validate query records from a file path, a ``datasets.Dataset`` or dicts.

    Raises:
        KnowledgeBaseError: on the first malformed row, naming the place and the problem.
        FileNotFoundError: when a path does not exist.
    """
    records = [_query_record(row, where) for where, row in _rows(source, csv_kind="query")]
    if not records:
        raise KnowledgeBaseError(f"{_name(source)}: no records (the query file is empty)")
    return records


# -------------------------------------------------------------------------------------------------
def _kb_record(row: Mapping[str, Any], where: str) -> KBRecord:
    _check_fields(row, KB_FIELDS, where, hint='put extra fields under "metadata"')
    text = _text(row, where)
    label = _opt_str(row, "label", where)
    lang = _opt_str(row, "lang", where)
    metadata = row.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise KnowledgeBaseError(f'{where}: "metadata" must be an object, got {_type(metadata)}')
    for key, value in metadata.items():
        _check_metadata_item(key, value, where)
    metadata = dict(metadata)
    rid = row.get("id")
    if rid is None:
        rid = "kb-" + content_hash(text, label, lang, metadata)
    elif not isinstance(rid, str) or not rid.strip():
        raise KnowledgeBaseError(f'{where}: "id" must be a non-empty string, got {rid!r}')
    _check_utf8(rid, '"id"', where)
    rec = KBRecord(id=rid, text=text, label=label, lang=lang, metadata=metadata)
    _remember_source(rec, where)
    return rec


def _check_metadata_item(key: Any, value: Any, where: str) -> None:
    """Refuse a metadata entry that Chroma would refuse, drop or change (see CHROMA_RESERVED_KEY_PREFIXES)."""
    if not isinstance(key, str) or not key:
        raise KnowledgeBaseError(f"{where}: metadata keys must be non-empty strings, got {key!r}")
    _check_utf8(key, "metadata key", where)
    if key in RESERVED_METADATA_KEYS or key.startswith(RESERVED_METADATA_PREFIX):
        raise KnowledgeBaseError(
            f"{where}: metadata key {key!r} is reserved (use the top-level field, or another name)"
        )
    if key.startswith(CHROMA_RESERVED_KEY_PREFIXES):
        raise KnowledgeBaseError(
            f"{where}: metadata key {key!r} is reserved by Chroma (keys may not start with "
            f"{', '.join(repr(p) for p in CHROMA_RESERVED_KEY_PREFIXES)})"
        )
    if not isinstance(value, _SCALARS):
        raise KnowledgeBaseError(
            f"{where}: metadata value for {key!r} must be a string, number or boolean, got {_type(value)}"
        )
    if isinstance(value, str):
        _check_utf8(value, f"metadata value for {key!r}", where)
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        raise KnowledgeBaseError(
            f"{where}: metadata value for {key!r} is outside the 64-bit integer range Chroma stores ({value})"
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise KnowledgeBaseError(f"{where}: metadata value for {key!r} must be a finite number, got {value}")


def _check_utf8(value: str, what: str, where: str) -> None:
    """Refuse strings that cannot be written as UTF-8 (lone surrogates from JSON escapes like \\ud800)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise KnowledgeBaseError(
            f"{where}: {what} is not valid Unicode (lone surrogate {value[exc.start]!r} at character {exc.start})"
        ) from None


def _query_record(row: Mapping[str, Any], where: str) -> QueryRecord:
    _check_fields(row, QUERY_FIELDS, where)
    text = _text(row, where)
    rel = row.get("relevant_ids")
    if rel is not None:
        if isinstance(rel, str) or not isinstance(rel, (list, tuple)):
            raise KnowledgeBaseError(f'{where}: "relevant_ids" must be a list of strings, got {_type(rel)}')
        if not rel or not all(isinstance(x, str) and x for x in rel):
            raise KnowledgeBaseError(f'{where}: "relevant_ids" must be a non-empty list of non-empty strings')
        rel = tuple(rel)
    return QueryRecord(
        text=text,
        label=_opt_str(row, "label", where),
        lang=_opt_str(row, "lang", where),
        relevant_ids=rel,
        source_id=_opt_str(row, "source_id", where),
    )


def _check_fields(row: Any, allowed: tuple[str, ...], where: str, hint: str = "") -> None:
    if not isinstance(row, Mapping):
        raise KnowledgeBaseError(f"{where}: expected a JSON object, got {_type(row)}")
    unknown = [k for k in row if k not in allowed]
    if unknown:
        extra = f"; {hint}" if hint else ""
        raise KnowledgeBaseError(
            f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(allowed)}){extra}"
        )


def _text(row: Mapping[str, Any], where: str) -> str:
    if "text" not in row or row["text"] is None:
        raise KnowledgeBaseError(f'{where}: missing "text"')
    text = row["text"]
    if not isinstance(text, str):
        raise KnowledgeBaseError(f'{where}: "text" must be a string, got {_type(text)}')
    if is_contentless(text):
        shown = f" (only control, format or whitespace characters: {text[:12]!r})" if text.strip() else ""
        raise KnowledgeBaseError(f'{where}: "text" is empty{shown}')
    _check_utf8(text, '"text"', where)
    return text


def _opt_str(row: Mapping[str, Any], key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeBaseError(f'{where}: "{key}" must be a non-empty string or absent, got {value!r}')
    return value


def _type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


# -------------------------------------------------------------------------------------------------
def _name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<dataset>"


def _rows(source: Any, *, csv_kind: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield ``(place, row)`` for each record of ``source``."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.is_dir():
            raise KnowledgeBaseError(f"{path}: is a folder, expected a .jsonl or .csv file")
        if path.suffix.lower() == ".csv":
            yield from _csv_rows(path, csv_kind)
        elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            yield from _jsonl_rows(path)
        else:
            raise KnowledgeBaseError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .csv)")
        return
    if isinstance(source, (bytes, Mapping)):
        raise TypeError(
            f"source must be a path, a datasets.Dataset or an iterable of dicts, got {_type(source)}"
        )
    label_names = _dataset_label_names(source)
    for i, row in enumerate(source, start=1):
        if label_names is not None and isinstance(row, Mapping) and isinstance(row.get("label"), int):
            index = row["label"]  # datasets marks a missing ClassLabel value as -1
            row = {**row, "label": label_names[index] if 0 <= index < len(label_names) else None}
        yield f"<dataset>:{i}", row


def _dataset_label_names(source: Any) -> list[str] | None:
    """Names of a ``datasets`` ClassLabel ``label`` column, so integer labels load as their names."""
    features = getattr(source, "features", None)
    feature = features.get("label") if isinstance(features, Mapping) else None
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise KnowledgeBaseError(
                    f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KnowledgeBaseError(
                f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
            ) from None
        yield f"{path}:{lineno}", row


def _csv_rows(path: Path, kind: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    text = "".join(line for _, line in _lines(path))
    reader = csv.reader(io.StringIO(text, newline=""))
    header = _next_csv_row(reader, path)
    if header is None:
        return
    header = [h.strip() for h in header]
    if "text" not in header:
        raise KnowledgeBaseError(f'{path}:1: the CSV header has no "text" column (got {", ".join(header)})')
    while (cells := _next_csv_row(reader, path)) is not None:
        where = f"{path}:{reader.line_num}"
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise KnowledgeBaseError(f"{where}: expected {len(header)} columns, got {len(cells)}")
        yield where, _csv_row(dict(zip(header, cells)), kind)


def _next_csv_row(reader: Any, path: Path) -> list[str] | None:
    """The next CSV row, ``None`` at the end; a malformed row is an error naming its line."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise KnowledgeBaseError(f"{path}:{max(reader.line_num, 1)}: malformed CSV ({exc})") from None


def _csv_row(cells: dict[str, str], kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    fields = KB_FIELDS if kind == "kb" else QUERY_FIELDS
    for key, value in cells.items():
        if key == "text":
            row["text"] = value
        elif value == "":
            continue
        elif key == "relevant_ids" and kind == "query":
            row[key] = [v.strip() for v in value.split("|") if v.strip()]
        elif key in fields and key != "metadata":
            row[key] = value
        elif kind == "kb":
            metadata[key] = value
        else:
            row[key] = value  # unknown query column: reported by validation
    if metadata:
        row["metadata"] = metadata
    return row
