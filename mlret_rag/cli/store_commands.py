"""``mlret index``, ``mlret query`` and ``mlret demo``: thin calls into the store, retriever and demo."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MlretError
from ..location import StoreLocation  # read at run time by @location_options
from . import app
from ._common import (
    BACKEND_HELP,
    FROM_OPTIONS,
    MODEL_HELP,
    QUIET_HELP,
    location_args,
    location_env,
    location_options,
    one_line_errors,
)

COLLECTION_HELP = "Collection name."
BATCH_HELP = "Records encoded and committed per step."
PRUNE_HELP = ("Also delete stored records whose ids are not in the file (--kb), or the chunks of documents "
              "no longer under PATH (--docs).")
DOCS_HELP = "Documents: a .md/.txt/.html/.pdf file, or a folder searched recursively."
INCLUDE_HELP = "With --docs: only files matching this glob (path or name; repeatable)."
EXCLUDE_HELP = "With --docs: leave out files matching this glob (path or name; repeatable)."
CHUNK_HELP = "Most encoder tokens per chunk (documents, and long records with --chunk-long)."
OVERLAP_HELP = "Most tokens of whole sentences a chunk repeats from the one before it (default: chunk tokens / 8)."
CHUNK_LONG_HELP = "With --kb: split records longer than the encoder's window into chunks <id>#<n>."
LOCK_TIMEOUT_HELP = "Embedded mode: seconds to wait while another process writes to the same --db (default 30)."
WORKERS_HELP = ("With --kb and --host: index from this many processes at once, each a shard of the ids "
                "(the end state is the same as one process; re-run after a failure).")
SHARD_HELP = "With --kb: index only shard I of N (I/N, 0-based; ids split by a stable hash), e.g. one worker."


@contextlib.contextmanager
def _library_errors() -> Iterator[None]:
    """Show Chroma's own validation errors and model-loading failures as one-line user errors."""
    from chromadb.errors import ChromaError

    try:
        yield
    except ChromaError as exc:
        raise MlretError(f"chroma: {exc}") from None
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, ConnectionError)):
            raise
        raise MlretError(str(exc)) from None


@app.command("index")
@one_line_errors
@location_options
def index_command(
    kb: Annotated[Path | None, typer.Option("--kb", help="Knowledge base: .jsonl or .csv file.")] = None,
    docs: Annotated[Path | None, typer.Option("--docs", help=DOCS_HELP)] = None,
    location: StoreLocation = FROM_OPTIONS,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = "mlret",
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help=BATCH_HELP)] = None,
    prune: Annotated[bool, typer.Option("--prune", help=PRUNE_HELP)] = False,
    include: Annotated[list[str] | None, typer.Option("--include", help=INCLUDE_HELP)] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help=EXCLUDE_HELP)] = None,
    chunk_tokens: Annotated[int, typer.Option("--chunk-tokens", help=CHUNK_HELP)] = 256,
    overlap_tokens: Annotated[int | None, typer.Option("--overlap-tokens", help=OVERLAP_HELP)] = None,
    chunk_long: Annotated[bool, typer.Option("--chunk-long", help=CHUNK_LONG_HELP)] = False,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", min=0, help=LOCK_TIMEOUT_HELP)] = 30.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help=WORKERS_HELP)] = 1,
    shard: Annotated[str | None, typer.Option("--shard", help=SHARD_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
) -> None:
    """Index a knowledge base (--kb) or documents (--docs): encode only new or changed records; safe to
    re-run after an interruption."""
    from ..encoder import MultilingualEncoder
    from ..kb import load_kb
    from ..store import ChromaStore

    if (kb is None) == (docs is None):
        raise MlretError("give either --kb FILE (records) or --docs PATH (documents)")
    if kb is not None and (include or exclude):
        raise MlretError("--include/--exclude select documents; use them with --docs, not --kb")
    if docs is not None and chunk_long:
        raise MlretError("--chunk-long splits long --kb records; documents are always chunked")
    part = _check_scale_out(workers, shard, kb=kb, host=location.host, prune=prune)
    records = load_kb(kb) if kb is not None else None  # validated in full before anything is written
    if workers > 1:
        assert kb is not None and location.host is not None
        given = {"--model": model, "--backend": backend, "--batch-size": batch_size, "--chunk-tokens": chunk_tokens,
                 "--overlap-tokens": overlap_tokens}
        _run_workers(workers, ["--kb", str(kb), *location_args(location), "--collection", collection,
                               *(x for k, v in given.items() if v is not None for x in (k, str(v))),
                               *(["--chunk-long"] if chunk_long else [])], env=location_env(location), kb=kb,
                     quiet=quiet)
    if docs is not None and not docs.exists():
        raise FileNotFoundError(f"{docs}: no such file or folder")
    with _library_errors():
        encoder = MultilingualEncoder(model, backend=backend)
        with ChromaStore(encoder, location, collection=collection, batch_size=batch_size,
                         show_progress_bar=not quiet, lock_timeout=lock_timeout) as store:  # closed even on error
            if docs is not None:
                _index_documents(store, docs, include=include, exclude=exclude, chunk_tokens=chunk_tokens,
                                 overlap_tokens=overlap_tokens, prune=prune)
                return
            assert records is not None and kb is not None
            records = _long_records(records, encoder, chunk_long=chunk_long, chunk_tokens=chunk_tokens,
                                    overlap_tokens=overlap_tokens)
            if part is not None:
                records = [r for r in records if shard_of(r.id, part[1]) == part[0]]
            result = None if workers > 1 else store.add(records)
            pruned = 0
            if prune:
                keep = {r.id for r in records}
                stale = [i for i in store.ids() if i not in keep]
                store.delete(stale)
                pruned = len(stale)
            total = store.count()
            # cheap: counts, metadata, vectors; a shard's worker leaves it to the run that started the workers
            check = None if part else store.verify(ids=[r.id for r in records], full=False)
    if result is None:
        typer.echo(f"indexed {len(records)} records from {kb} with {workers} workers into {store.location} "
                   f"collection {collection!r}" + (f", pruned {pruned}" if prune else "") + f"; {total} stored")
    else:
        typer.echo(
            f"indexed {len(records)} records from {kb}" + (f" (shard {shard})" if part else "")
            + f" into {store.location} collection {collection!r}: "
            f"encoded {result.encoded} (added {result.added}, updated {result.updated}), "
            f"unchanged {result.unchanged}" + (f", pruned {pruned}" if prune else "") + f"; {total} stored"
        )
    if check is not None and not check.ok:
        typer.echo(f"damage found: {check.summary()}; run `mlret check --repair` with the same --db/--host", err=True)
        raise typer.Exit(1)


def shard_of(record_id: str, shards: int) -> int:
    """The shard (0 .. shards-1) of a record id: a stable hash, the same in every process and run."""
    import hashlib

    return int.from_bytes(hashlib.sha1(record_id.encode("utf-8")).digest()[:8], "big") % shards


def _check_scale_out(workers: int, shard: str | None, *, kb: Path | None, host: str | None,
                     prune: bool) -> tuple[int, int] | None:
    """Validate --workers / --shard; returns the shard as (I, N) when one was given."""
    if workers > 1 and shard is not None:
        raise MlretError("give --workers N or --shard I/N, not both")
    if (workers > 1 or shard is not None) and kb is None:
        raise MlretError("--workers and --shard split the records of --kb; documents are indexed by one process")
    if workers > 1 and host is None:
        raise MlretError("--workers needs a Chroma server (--host/--port): an embedded --db takes one writer at a time")
    if shard is None:
        return None
    if prune:
        raise MlretError("--prune with --shard would delete the other shards' records; prune in a run without --shard")
    try:
        index, total = (int(x) for x in shard.split("/"))
    except ValueError:
        raise MlretError(f"--shard must look like I/N (e.g. 0/2), got {shard!r}") from None
    if not (total >= 1 and 0 <= index < total):
        raise MlretError(f"--shard {shard}: I must be in 0..N-1 and N >= 1")
    return index, total


def _run_workers(workers: int, args: list[str], *, env: dict[str, str], kb: Path, quiet: bool) -> None:
    """Run ``workers`` copies of ``mlret index ARGS`` (``env`` added to their environment), each with
    ``--shard i/N``; fail naming any that failed."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-m", "mlret_rag.cli", "index", *args, "--shard", f"{i}/{workers}",
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env})
             for i in range(workers)]
    failed = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate()
        if not quiet and out.strip():
            typer.echo(f"worker {i}: {out.strip()}")
        if proc.returncode != 0:
            last = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            failed.append(f"worker {i}/{workers}: {last}")
    if failed:
        raise MlretError(f"indexing {kb} with {workers} workers failed ({'; '.join(failed)}); what was committed "
                         "is kept: run the same command again to finish")


def _long_records(records: list, encoder: object, *, chunk_long: bool, chunk_tokens: int,
                  overlap_tokens: int | None) -> list:
    """Split records longer than the encoder's window (``--chunk-long``), or name them on stderr."""
    from ..documents import oversized_records, split_long_records

    if chunk_long:
        out = split_long_records(records, encoder, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)
        kept = {r.id for r in out}
        split = [r.id for r in records if r.id not in kept]
        if split:
            chunks = len(out) - (len(records) - len(split))
            typer.echo(f"split {len(split)} records longer than the encoder's window into {chunks} chunks "
                       f"(<id>#<n>): {', '.join(split[:10])}{' ...' if len(split) > 10 else ''}", err=True)
        return out
    long = oversized_records(records, encoder)
    if long:
        shown = ", ".join(f"{rid} ({n} tokens)" for rid, n in long[:10])
        more = f" and {len(long) - 10} more" if len(long) > 10 else ""
        typer.echo(
            f"warning: {len(long)} record{'s are' if len(long) > 1 else ' is'} longer than the encoder's "
            f"{encoder.max_seq_length}-token window and truncated when encoded (the rest of the text is not "  # type: ignore[attr-defined]
            f"searchable): {shown}{more}; pass --chunk-long to index them as chunks <id>#<n>",
            err=True,
        )
    return records


def _index_documents(store: object, docs: Path, *, include: list[str] | None, exclude: list[str] | None,
                     chunk_tokens: int, overlap_tokens: int | None, prune: bool) -> None:
    from ..documents import sync_documents

    result = sync_documents(store, docs, include=include, exclude=exclude, chunk_tokens=chunk_tokens,  # type: ignore[arg-type]
                            overlap_tokens=overlap_tokens, prune=prune)
    total = store.count()  # type: ignore[attr-defined]
    pruned = (f", pruned {result.pruned} chunks of {result.pruned_documents} deleted documents"
              if prune else "")
    typer.echo(
        f"indexed {result.chunks} chunks of {result.documents} documents from {docs} into "
        f"{store.location} collection {store.collection_name!r}: "  # type: ignore[attr-defined]
        f"encoded {result.encoded} (added {result.added}, updated {result.updated}), unchanged "
        f"{result.unchanged}, removed {result.removed} stale{pruned}; {total} stored"
    )
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} file{'s' if len(result.skipped) > 1 else ''}:")
        for skip in result.skipped:
            typer.echo(f"  {skip}")


@app.command("query")
@one_line_errors
@location_options
def query_command(
    text: Annotated[str, typer.Argument(help="The question, in any language.")],
    location: StoreLocation = FROM_OPTIONS,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = "mlret",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of hits.")] = 5,
    per_document: Annotated[int | None, typer.Option(
        "--per-document", min=1, help="At most this many hits from one document (chunks of one file).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"query", "hits"} as JSON.')] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model to encode the question; default: the one that indexed the collection."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
) -> None:
    """Retrieve the best knowledge-base entries for a question (score = cosine similarity)."""
    from ..retriever import MultilingualRetriever

    db = location.path
    if db is not None and not db.is_dir():
        raise MlretError(
            f"no database at {db}; index a knowledge base first (mlret index --kb FILE --db {db})"
        )
    with _library_errors():
        retriever = MultilingualRetriever.open(model, location=location, collection=collection,
                                               show_progress_bar=False, create=False, backend=backend)
        hits = retriever.retrieve(text, k=k, per_document=per_document)
    if as_json:
        payload = {
            "query": text,
            "hits": [
                {"id": h.id, "text": h.text, "label": h.label, "score": h.score, "metadata": h.metadata}
                for h in hits
            ],
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{text}  ({retriever.encoder.model_name}, {retriever.store.location})")
    sourced = any("source" in h.metadata for h in hits)
    for name, kw in (
        ("#", {"justify": "right"}),
        ("score", {"justify": "right"}),
        ("source" if sourced else "label", {}),
        ("id", {}),
        ("text", {"overflow": "fold"}),
    ):
        table.add_column(name, **kw)
    for rank, h in enumerate(hits, start=1):
        where_from = h.label or ""
        if sourced:
            where_from = " > ".join(str(x) for x in (h.metadata.get("source"), h.metadata.get("headings")) if x)
        table.add_row(str(rank), f"{h.score:.3f}", where_from, h.id, h.text)
    Console().print(table)


@app.command("demo")
@one_line_errors
def demo_command(
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
    finetune: Annotated[bool, typer.Option(
        "--finetune/--no-finetune",
        help="Then fine-tune briefly on the FAQ (about a minute on CPU) and compare base vs tuned.")] = True,
    tuned_out: Annotated[Path | None, typer.Option(
        "--tuned-out", help="Keep the tuned model in this folder (replaced if it exists).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Fine-tune epochs over the 60 training questions.")] = 6,
) -> None:
    """Index a small English support FAQ, answer questions in 7 languages, then fine-tune and compare (offline)."""
    from ..demo import run_demo, run_finetune_demo

    with _library_errors():
        run_demo(model=model, backend=backend, show_progress_bar=not quiet)
        if finetune:
            run_finetune_demo(model=model, out=tuned_out, epochs=epochs, show_progress_bar=not quiet)
