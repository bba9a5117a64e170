"""Documents as knowledge-base records: read Markdown, HTML, text and PDF files, chunk them in the
encoder's own tokens, and keep a collection in sync with a folder.

Chunking is done by `semchunk <https://github.com/isaacus-dev/semchunk>`_ with the encoder's tokenizer as
its token counter: inside each section (Markdown/HTML headings) it splits at the longest run of newlines
(paragraphs), then lines, then whitespace after sentence punctuation, then other whitespace, clause
punctuation, and only then characters, and merges the pieces back up to ``chunk_tokens``. Scripts
written without spaces get their sentence ends (``。！？`` and friends) marked as line breaks first, so
Chinese and Japanese chunks end on sentences too; Thai, which puts spaces between phrases, splits there.

Each chunk becomes a :class:`~mlret_rag.kb.KBRecord` with id ``"<document id>#<n>"`` (``n`` counts from
0; the document id is the file's path relative to the folder given, with ``/`` separators, or the file
name when one file is given) and metadata:

``doc_id``
    the document id (what :meth:`~mlret_rag.MultilingualRetriever.retrieve` groups by with
    ``per_document``);
``source``
    the same path (LangChain's and LlamaIndex's citation field);
``title``
    the first heading (HTML: ``<title>``; PDF: its title metadata), else the file name;
``headings``
    the heading path of the chunk's section, joined with ``" > "`` (empty when none);
``chunk``, ``start``, ``end``
    the chunk number and its character offsets in the document's text (for Markdown and text files
    the decoded file itself, so ``text == file_text[start:end]``; for HTML and PDF the extracted text);
``page``
    PDF only: the 1-based page on which the chunk starts.

Everything that identifies a chunk derives from the file's path and bytes, so loading the same folder
twice gives the same records, and re-indexing encodes only what changed.
"""

from __future__ import annotations

import bisect
import fnmatch
import html.parser
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DocumentError, KnowledgeBaseError
from .kb import KBRecord

if TYPE_CHECKING:
    from .encoder import MultilingualEncoder
    from .store import ChromaStore

SUFFIXES = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
    ".html": "html", ".htm": "html", ".pdf": "pdf",
}
DEFAULT_CHUNK_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = None  # chunk_tokens // 8: 32 for the default 256
DOC_ID_KEY = "doc_id"
PDF_EXTRA_HINT = "PDF files need the optional extra: pip install 'mlret-rag[pdf]'"
# Room for the document prompt ("passage: ") and the two special tokens inside the encoder's window.
_WINDOW_MARGIN = 12

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not indexed, and why (``reason`` names the page for PDF problems)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class LoadedDocuments:
    """What :func:`load_documents` read: the chunk ``records`` (iterate or ``len()`` it like a list), the
    ids of the documents they came from, the files ``skipped`` and ``notes`` on partly readable ones."""

    records: list[KBRecord]
    documents: list[str]
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[KBRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_documents` did to the collection.

    ``encoded`` chunks were new or changed (``added`` + ``updated``), ``unchanged`` were kept as stored,
    ``removed`` were stale chunks of changed documents (a document got shorter), ``pruned`` belonged to
    ``pruned_documents`` that are no longer in the folder (only with ``prune=True``).
    """

    documents: int
    chunks: int
    added: int
    updated: int
    unchanged: int
    removed: int
    pruned: int
    pruned_documents: int
    skipped: list[SkippedFile]
    notes: list[str]

    @property
    def encoded(self) -> int:
        """Chunks encoded and written by this run."""
        return self.added + self.updated


# -------------------------------------------------------------------------------------------------
def load_documents(
    path: str | os.PathLike[str],
    *,
    include: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int | None = DEFAULT_OVERLAP_TOKENS,
    tokenizer: MultilingualEncoder | str | os.PathLike[str] | TokenCounter | None = None,
    lang: str | None = None,
) -> LoadedDocuments:
    """Read ``.md``/``.txt``/``.html``/``.pdf`` files under ``path`` and chunk them into KB records.

    Args:
        path: a file, or a folder searched recursively (hidden files and folders are left out).
        include: glob(s) a file must match, on its relative path or its name (default: every supported
            suffix); ``*`` also crosses ``/``, so ``"*.md"`` finds Markdown files at any depth.
        exclude: glob(s) of files to leave out, matched the same way (e.g. ``"drafts/*"``).
        chunk_tokens: most tokens of the encoder per chunk (default 256; at most the window minus 12).
        overlap_tokens: at most this many tokens of whole sentences a chunk repeats from the one before
            it in the same section (default ``chunk_tokens // 8``, i.e. 32 for 256; 0 for none).
        tokenizer: whose tokens to count: a :class:`~mlret_rag.MultilingualEncoder`, a model folder, a
            callable returning a token count, or ``None`` for the bundled model's tokenizer.
        lang: language code stored on every record (optional).

    Returns:
        :class:`LoadedDocuments`; files that cannot be read (unreadable, undecodable, empty, encrypted or
        image-only PDF, PDF without the ``pdf`` extra) are listed in ``skipped`` with the reason, and
        the other files still load.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DocumentError: an invalid argument.
    """
    root = Path(path)
    if not root.exists() and not root.is_symlink():
        raise FileNotFoundError(f"{root}: no such file or folder")
    includes, excludes = _globs(include, "include"), _globs(exclude, "exclude")
    counter, window = token_counter(tokenizer)
    overlap_tokens = _check_sizes(chunk_tokens, overlap_tokens, window)
    if lang is not None and (not isinstance(lang, str) or not lang.strip()):
        raise DocumentError(f"lang must be a non-empty string or None, got {lang!r}")
    counter = _bounded(counter, chunk_tokens)
    records: list[KBRecord] = []
    documents: list[str] = []
    skipped: list[SkippedFile] = []
    skipped_ids: list[str] = []
    notes: list[str] = []
    for doc_id, file in _find_files(root, includes, excludes):
        try:
            doc = _read(file, doc_id, notes)
            spans = _chunk(doc, counter, chunk_tokens, overlap_tokens)
            if not spans:
                raise _Skip("empty document (no text)")
        except _Skip as skip:
            skipped.append(SkippedFile(str(file), str(skip)))
            skipped_ids.append(doc_id)
            continue
        documents.append(doc_id)
        for n, (start, end, headings, page) in enumerate(spans):
            meta: dict[str, Any] = {
                DOC_ID_KEY: doc_id, "source": doc_id, "title": doc.title, "headings": " > ".join(headings),
                "chunk": n, "start": start, "end": end,
            }
            if page is not None:
                meta["page"] = page
            records.append(KBRecord(id=f"{doc_id}#{n}", text=doc.text[start:end], lang=lang, metadata=meta))
    return LoadedDocuments(records, documents, skipped, notes, skipped_ids)


def sync_documents(
    store: ChromaStore,
    source: str | os.PathLike[str] | LoadedDocuments,
    *,
    prune: bool = False,
    **load_options: Any,
) -> SyncResult:
    """Make ``store`` hold exactly the chunks of the documents under ``source``.

    New and changed chunks are encoded (unchanged ones are not), chunks a changed document no longer has
    are deleted, and with ``prune=True`` so are the chunks of documents that are gone from the folder.
    Chunks of files skipped this time (e.g. unreadable) are kept as stored. Every step is idempotent, so
    a run killed at any point and started again ends with the same collection as a fresh index.

    Args:
        store: the collection to update; its encoder's tokenizer sizes the chunks.
        source: a file or folder (loaded with ``load_options``, see :func:`load_documents`), or the
            result of :func:`load_documents`.
        prune: also delete the chunks of documents no longer present. Needs a folder: a single file or
            loaded documents cannot tell a deleted document from one that was simply not given. Records
            that are not document chunks (plain ``mlret index --kb`` records and their ``--chunk-long``
            chunks) are never touched; documents left out by ``include``/``exclude`` count as gone.

    Raises:
        DocumentError: nothing could be loaded (the message lists the skipped files).
    """
    if prune and (isinstance(source, LoadedDocuments) or Path(source).is_file()):
        raise DocumentError(f"{source if not isinstance(source, LoadedDocuments) else 'loaded documents'}: "
                            "prune needs the folder the documents live in (one file cannot tell which are gone)")
    if isinstance(source, LoadedDocuments):
        if load_options:
            raise DocumentError(f"load options {sorted(load_options)} need a path, not loaded documents")
        loaded = source
        where = "the documents given"
    else:
        load_options.setdefault("tokenizer", store.encoder)
        loaded = load_documents(source, **load_options)
        where = str(source)
    if not loaded.records:
        reasons = "; ".join(str(s) for s in loaded.skipped[:5]) or f"no {'/'.join(sorted(SUFFIXES))} files"
        raise DocumentError(f"{where}: no documents to index ({reasons})")
    result = store.add(loaded.records)
    new_ids = {r.id for r in loaded.records}
    current = set(loaded.documents)
    keep = current | set(loaded.skipped_ids)
    stored = store.metadata_values(DOC_ID_KEY)
    stale = sorted(i for i, d in stored.items() if d in current and i not in new_ids)
    gone = []
    if prune:  # only document chunks (their source is their doc_id): --kb --chunk-long chunks have a doc_id too
        sources = store.metadata_values("source")
        gone = sorted(i for i, d in stored.items() if d not in keep and sources.get(i) == d)
    store.delete(stale + gone)
    return SyncResult(
        documents=len(loaded.documents), chunks=len(loaded.records), added=result.added,
        updated=result.updated, unchanged=result.unchanged, removed=len(stale), pruned=len(gone),
        pruned_documents=len({stored[i] for i in gone}), skipped=list(loaded.skipped), notes=list(loaded.notes),
    )


# -------------------------------------------------------------------------------------------------
def token_counter(
    tokenizer: MultilingualEncoder | str | os.PathLike[str] | TokenCounter | None = None,
) -> tuple[TokenCounter, int | None]:
    """A function counting the encoder's tokens in a text (no special tokens, no prompt), and the
    encoder's window when known. Loads only the tokenizer file, never the model weights."""
    if tokenizer is None:
        from .bundled import ensure_bundled_model

        return _folder_counter(ensure_bundled_model())
    if isinstance(tokenizer, (str, os.PathLike)):
        folder = Path(tokenizer)
        if not (folder / "tokenizer.json").is_file():
            raise DocumentError(f"tokenizer: {folder} has no tokenizer.json; pass the encoder instead")
        return _folder_counter(folder)
    if hasattr(tokenizer, "encode_documents"):  # a MultilingualEncoder
        window = int(tokenizer.max_seq_length)
        folder = tokenizer.model_path
        if folder is not None and (Path(folder) / "tokenizer.json").is_file():
            return _folder_counter(Path(folder))[0], window
        hf = tokenizer.sentence_transformer.tokenizer
        return (lambda text: len(hf.encode(text, add_special_tokens=False))), window
    if callable(tokenizer):
        return tokenizer, None
    raise DocumentError(
        f"tokenizer must be a MultilingualEncoder, a model folder, a callable or None, got {type(tokenizer).__name__}"
    )


def _folder_counter(folder: Path) -> tuple[TokenCounter, int | None]:
    stat = (folder / "tokenizer.json").stat()
    return _cached_folder_counter(str(folder.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _cached_folder_counter(folder_name: str, _mtime: int, _size: int) -> tuple[TokenCounter, int | None]:
    """Reading a 17 MB tokenizer.json takes a second: once per folder (and version of the file)."""
    import json

    folder = Path(folder_name)

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    window = None
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        config = folder / name
        if window is None and config.is_file():
            value = json.loads(config.read_text(encoding="utf-8")).get(key)
            window = value if isinstance(value, int) and 0 < value < 100_000 else None
    return (lambda text: len(tok.encode(text, add_special_tokens=False))), window


def _bounded(counter: TokenCounter, chunk_tokens: int) -> TokenCounter:
    """Memoise the counter for one load, and stop counting a long text once it is clearly too long (the
    chunker only needs to know that), as semchunk's own tokenizer wrapper does."""
    limit = chunk_tokens * 8

    @lru_cache(maxsize=1 << 16)
    def count(text: str) -> int:
        if len(text) > limit and counter(text[:limit]) > chunk_tokens:
            return chunk_tokens + 1
        return counter(text)

    return count


def _check_sizes(chunk_tokens: Any, overlap_tokens: Any, window: int | None) -> int:
    """Validate the sizes; returns the overlap to use (``None`` means ``chunk_tokens // 8``)."""
    top = (window or 512) - _WINDOW_MARGIN
    if not isinstance(chunk_tokens, int) or isinstance(chunk_tokens, bool) or not 8 <= chunk_tokens <= top:
        raise DocumentError(f"chunk_tokens must be an integer in 8..{top} (the encoder's window is "
                            f"{window or 512} tokens), got {chunk_tokens!r}")
    if overlap_tokens is None:
        return chunk_tokens // 8
    if (not isinstance(overlap_tokens, int) or isinstance(overlap_tokens, bool)
            or not 0 <= overlap_tokens < chunk_tokens // 2):
        raise DocumentError(f"overlap_tokens must be an integer in 0..{chunk_tokens // 2 - 1} (less than half "
                            f"of chunk_tokens={chunk_tokens}), got {overlap_tokens!r}")
    return overlap_tokens


def _globs(value: Sequence[str] | str | None, name: str) -> list[str]:
    if value is None:
        return []
    globs = [value] if isinstance(value, str) else list(value)
    for g in globs:
        if not isinstance(g, str) or not g.strip():
            raise DocumentError(f"{name} must be glob strings, got {g!r}")
    return globs


def _matches(rel: str, globs: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in globs)


def _find_files(root: Path, includes: list[str], excludes: list[str]) -> list[tuple[str, Path]]:
    """(document id, path) of each file to read, sorted by id."""
    if not root.is_dir():
        return [(root.name, root)]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            file = Path(folder) / name
            rel = file.relative_to(root).as_posix()
            if includes and not _matches(rel, includes):
                continue
            if not includes and file.suffix.lower() not in SUFFIXES:
                continue
            if excludes and _matches(rel, excludes):
                continue
            found.append((rel, file))
    return sorted(found)


# -------------------------------------------------------------------------------------------------
class _Skip(Exception):
    """This file cannot be indexed; the message says why."""


@dataclass
class _Doc:
    text: str
    title: str
    # (start offset, heading path) of each section, in order; the first starts at 0.
    sections: list[tuple[int, tuple[str, ...]]]
    page_starts: list[int] | None = None  # PDF: offset of each page's text


def _read(file: Path, doc_id: str, notes: list[str]) -> _Doc:
    kind = SUFFIXES.get(file.suffix.lower())
    if kind is None:
        raise _Skip(f"unsupported file type {file.suffix or '(none)'!r} (supported: {', '.join(sorted(SUFFIXES))})")
    if kind == "pdf":
        return _read_pdf(file, notes)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _Skip(f"cannot read ({exc.strerror or exc})") from None
    text = _decode(data, html=kind == "html")
    if kind == "markdown":
        return _markdown(text, file.name)
    if kind == "html":
        return _html(text, file.name)
    return _Doc(text=text, title=file.name, sections=[(0, ())])


def _decode(data: bytes, *, html: bool) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _Skip(f"not valid UTF-16 ({exc.reason} at byte {exc.start})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    encoding = "utf-8"
    if html:
        declared = re.search(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.IGNORECASE)
        if declared:
            encoding = declared.group(1).decode("ascii").lower()
    try:
        return data.decode(encoding)
    except LookupError:
        raise _Skip(f"declares an unknown character set {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise _Skip(f"not valid {encoding.upper()} ({exc.reason} at byte {exc.start}); "
                    "save it as UTF-8") from None


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?\r?\n)(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def _markdown(text: str, name: str) -> _Doc:
    """Sections at ATX and setext headings (found by markdown-it, so ``#`` in code blocks is no heading)."""
    from markdown_it import MarkdownIt

    body_start = 0
    title = None
    front = _FRONT_MATTER.match(text)
    if front:
        body_start = front.end()
        m = re.search(r"^title:[ \t]*(.+?)[ \t]*$", front.group(1), re.MULTILINE)
        if m:
            title = m.group(1).strip("'\"") or None
    line_starts = [0]
    for m in re.finditer(r"\n", text):
        line_starts.append(m.end())
    first_line = bisect.bisect_right(line_starts, body_start) - 1
    tokens = MarkdownIt("commonmark").parse(text[line_starts[first_line]:])
    headings = []  # (offset, level, text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map:
            content = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            headings.append((line_starts[first_line + tok.map[0]], int(tok.tag[1]), content))
    sections = _sections(text, body_start, headings)
    title = title or next((h[2] for h in headings if h[2]), None) or name
    return _Doc(text=text, title=title, sections=sections)


def _sections(text: str, body_start: int, headings: list[tuple[int, int, str]]) -> list[tuple[int, tuple[str, ...]]]:
    """Section starts with their heading paths; a heading with no text under it before the next heading
    joins the next section (so a chapter title travels with its first subsection)."""
    sections: list[tuple[int, tuple[str, ...]]] = []
    stack: list[tuple[int, str]] = []
    pending: int | None = None  # start of a heading-only section waiting for its body
    ends = [h[0] for h in headings[1:]] + [len(text)]
    if not headings or headings[0][0] > body_start:
        sections.append((body_start, ()))
    for (start, level, title), end in zip(headings, ends):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        path = tuple(t for _, t in stack if t)
        body = text[start:end].split("\n", 1)
        has_body = len(body) > 1 and body[1].strip() and not _is_setext_underline(body[1])
        if not has_body and end < len(text):
            pending = start if pending is None else pending
            continue
        sections.append((pending if pending is not None else start, path))
        pending = None
    if not sections:
        sections.append((body_start, ()))
    if sections[0][0] > 0 and not text[: sections[0][0]].strip():
        sections[0] = (0, sections[0][1])
    return sections


def _is_setext_underline(rest: str) -> bool:
    return re.fullmatch(r"\s*[=-]+\s*", rest) is not None


# HTML ------------------------------------------------------------------------------------------------
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "ul",
})
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas", "nav"})


class _HTMLText(html.parser.HTMLParser):
    """Block-separated text of an HTML page with the place and level of each heading."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, int]] = []  # (text, heading level or 0)
        self.title = ""
        self._buf: list[str] = []
        self._skip = 0
        self._pre = 0
        self._heading = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag == "body":
            self._skip = 0  # a page that never closes <head> still has a body
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._pre += 1
            if re.fullmatch(r"h[1-6]", tag):
                self._heading = int(tag[1])
        elif tag == "br":
            self._buf.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip:
            return
        self._buf.append(data if self._pre else re.sub(r"\s+", " ", data))

    def _flush(self) -> None:
        text = "".join(self._buf)
        self._buf = []
        if not self._pre:
            text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
        text = text.strip("\n ")
        if text:
            self.blocks.append((text, self._heading))
        self._heading = 0

    def close(self) -> None:
        super().close()
        self._flush()


def _html(text: str, name: str) -> _Doc:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    pieces, headings, offset = [], [], 0
    for block, level in parser.blocks:
        if pieces:
            offset += 2
        if level:
            headings.append((offset, level, " ".join(block.split())))
        pieces.append(block)
        offset += len(block)
    plain = "\n\n".join(pieces)
    title = " ".join(parser.title.split()) or next((h[2] for h in headings if h[2]), None) or name
    return _Doc(text=plain, title=title, sections=_sections(plain, 0, headings))


# PDF -------------------------------------------------------------------------------------------------
def _read_pdf(file: Path, notes: list[str]) -> _Doc:
    try:
        import pypdf
    except ImportError:
        raise _Skip(PDF_EXTRA_HINT) from None
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd files are ours to report
    try:
        reader = pypdf.PdfReader(str(file))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Skip("encrypted PDF (needs a password); decrypt it first")
        pages = list(reader.pages)
    except _Skip:
        raise
    except OSError as exc:
        raise _Skip(f"cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds for damaged files
        if "encrypt" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise _Skip(f"encrypted PDF that cannot be opened ({exc})") from None
        raise _Skip(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    texts, empty, failed = [], [], []
    for number, page in enumerate(pages, start=1):
        try:
            texts.append((page.extract_text() or "").strip())
        except Exception as exc:  # noqa: BLE001
            failed.append(f"page {number}: cannot extract text ({type(exc).__name__}: {exc})")
            texts.append("")
            continue
        if not texts[-1]:
            empty.append(number)
    if not any(texts):
        if failed:
            raise _Skip("; ".join(failed))
        raise _Skip(f"no text on any of its {len(pages)} page(s) (an image-only or scanned PDF; run OCR first)")
    for problem in failed:
        notes.append(f"{file} {problem}")
    if empty:
        notes.append(f"{file} page{'s' if len(empty) > 1 else ''} {_ranges(empty)}: no text (image-only?); "
                     "the other pages are indexed")
    starts, pieces, offset = [], [], 0
    for text in texts:
        if pieces:
            offset += 2
        starts.append(offset)
        pieces.append(text)
        offset += len(text)
    meta_title = None
    try:
        meta_title = reader.metadata.title if reader.metadata else None
    except Exception:  # noqa: BLE001 - damaged info dictionary: fall back to the file name
        meta_title = None
    title = " ".join(str(meta_title).split()) if meta_title else file.name
    return _Doc(text="\n\n".join(pieces), title=title, sections=[(0, ())], page_starts=starts)


def _ranges(numbers: list[int]) -> str:
    out, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(out)


# Chunking --------------------------------------------------------------------------------------------
# Sentence ends of scripts written without spaces between sentences (CJK full-width forms, Devanagari
# danda, Arabic/Urdu full stop, Ethiopic, Tibetan, Myanmar, Khmer) when no whitespace follows them.
_SPACELESS_SENTENCE_END = re.compile(r"(?<=[。！？；｡．!?।॥۔።༎။។])(?=[^\s」』）》】〉”’\"')\]。！？])")


# Where an overlap may start: after a sentence end or a line break, at the next non-space character.
_OVERLAP_START = re.compile(r"(?:[.!?;…]\s+|[。！？；।۔]\s*|\n\s*)(?=\S)")


def _chunk(doc: _Doc, counter: TokenCounter, chunk_tokens: int, overlap: int) -> list[tuple[int, int, tuple[str, ...], int | None]]:
    """(start, end, heading path, page) of each chunk, in document order.

    semchunk cuts each section into pieces of at most ``chunk_tokens - overlap`` tokens; each piece then
    takes over the last whole sentences (or lines) of the piece before it, up to ``overlap`` tokens, so
    a chunk still starts at a sentence (semchunk's own overlap cuts its overlap out of sub-chunks, which
    can start mid-sentence).
    """
    import semchunk

    spans = []
    bounds = [s for s, _ in doc.sections[1:]] + [len(doc.text)]
    for (start, path), end in zip(doc.sections, bounds):
        section = doc.text[start:end]
        if not section.strip():
            continue
        marked, origin, inserted = _mark_sentences(section)
        chunks, offsets = semchunk.chunk(marked, chunk_tokens - overlap, counter, memoize=False, offsets=True)
        pieces = []
        for text, (a, b) in zip(chunks, offsets):
            if not text.strip():
                continue
            s = start + origin[a] + (a in inserted)
            e = start + origin[b - 1] + 1
            while s < e and doc.text[s].isspace():
                s += 1
            while e > s and doc.text[e - 1].isspace():
                e -= 1
            if s < e:
                pieces.append((s, e))
        for i, (s, e) in enumerate(pieces):
            if overlap and i:
                s = _overlap_start(doc.text, pieces[i - 1], s, counter, overlap)
            page = bisect.bisect_right(doc.page_starts, s) if doc.page_starts is not None else None
            spans.append((s, e, path, page))
    return spans


def _overlap_start(text: str, previous: tuple[int, int], start: int, counter: TokenCounter, overlap: int) -> int:
    """The earliest sentence or line start in ``previous`` from which its tail fits ``overlap`` tokens."""
    prev_start, prev_end = previous
    candidates = [m.end() for m in _OVERLAP_START.finditer(text, prev_start, prev_end)]
    best = start
    for cand in reversed(candidates):
        if cand >= prev_end:
            continue
        if counter(text[cand:prev_end]) > overlap:
            break
        best = cand
    return best


def _mark_sentences(text: str) -> tuple[str, list[int], set[int]]:
    """``text`` with a line break after each spaceless sentence end, the original offset of every
    character of the result (a break maps onto the sentence end before it), and the breaks' positions,
    so chunk offsets map back onto the unmarked text."""
    cuts = [m.start() for m in _SPACELESS_SENTENCE_END.finditer(text)]
    if not cuts:
        return text, list(range(len(text))), set()
    out, origin, inserted, prev = [], [], set(), 0
    for cut in cuts:
        out.append(text[prev:cut])
        origin.extend(range(prev, cut))
        inserted.add(len(origin))
        out.append("\n")
        origin.append(cut - 1)
        prev = cut
    out.append(text[prev:])
    origin.extend(range(prev, len(text)))
    return "".join(out), origin, inserted


# Records longer than the window ----------------------------------------------------------------------
def oversized_records(
    records: Iterable[KBRecord], encoder: MultilingualEncoder
) -> list[tuple[str, int]]:
    """``(id, tokens)`` of each record whose text, with the document prompt and special tokens, does not
    fit the encoder's window: the encoder truncates those, so their tail is never searchable."""
    counter, window = token_counter(encoder)
    limit = int(window or encoder.max_seq_length)
    extra = counter(encoder.document_prompt) + 2 if encoder.document_prompt else 2
    out = []
    for rec in records:
        if 2 * len(rec.text) + extra > limit:  # a character is at most ~2 tokens: short texts fit
            n = counter(rec.text) + extra
            if n > limit:
                out.append((rec.id, n))
    return out


def split_long_records(
    records: Iterable[KBRecord],
    encoder: MultilingualEncoder,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int | None = DEFAULT_OVERLAP_TOKENS,
) -> list[KBRecord]:
    """Records that fit the window as they are; each longer one becomes chunks ``"<id>#<n>"`` with the
    same label, language and metadata plus ``doc_id`` (the original id), ``chunk``, ``start`` and ``end``."""
    records = list(records)
    long_ids = {rid for rid, _ in oversized_records(records, encoder)}
    if not long_ids:
        return records
    counter, window = token_counter(encoder)
    overlap_tokens = _check_sizes(chunk_tokens, overlap_tokens, window)
    counter = _bounded(counter, chunk_tokens)
    out = []
    for rec in records:
        if rec.id not in long_ids:
            out.append(rec)
            continue
        doc = _Doc(text=rec.text, title=rec.id, sections=[(0, ())])
        for n, (s, e, _, _) in enumerate(_chunk(doc, counter, chunk_tokens, overlap_tokens)):
            meta = {**rec.metadata, DOC_ID_KEY: rec.id, "chunk": n, "start": s, "end": e}
            out.append(KBRecord(id=f"{rec.id}#{n}", text=rec.text[s:e], label=rec.label, lang=rec.lang,
                                metadata=meta))
    ids = [r.id for r in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise KnowledgeBaseError(f"chunk id {dup!r} of a long record clashes with an existing record id")
    return out
