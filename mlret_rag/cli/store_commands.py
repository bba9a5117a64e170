"""``mlret index``, ``mlret query`` and ``mlret demo``: thin calls into the store, retriever and demo."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MlretError
from . import app
from ._common import BACKEND_HELP, MODEL_HELP, QUIET_HELP, one_line_errors

DB_HELP = "Embedded Chroma folder (default: $MLRET_HOME/db). Not with --host."
HOST_HELP = "Chroma server host (use with --port) instead of an embedded folder."
PORT_HELP = "Chroma server port (default 8000)."
COLLECTION_HELP = "Collection name."
BATCH_HELP = "Records encoded and committed per step."
PRUNE_HELP = "Also delete stored records whose ids are not in the file."
TOKEN_HELP = "Bearer token for a Chroma server that requires one (or set MLRET_CHROMA_TOKEN)."

TOKEN_OPTION = typer.Option("--auth-token", envvar="MLRET_CHROMA_TOKEN", help=TOKEN_HELP)


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


def _where(db: Path | None, host: str | None, port: int | None) -> dict:
    if db is not None and host is not None:
        raise MlretError("give either --db (embedded folder) or --host/--port (Chroma server), not both")
    if port is not None and host is None:
        raise MlretError("--port needs --host")
    return {"path": db, "host": host, "port": port}


@app.command("index")
@one_line_errors
def index_command(
    kb: Annotated[Path, typer.Option("--kb", help="Knowledge base: .jsonl or .csv file.")],
    db: Annotated[Path | None, typer.Option("--db", help=DB_HELP)] = None,
    host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
    port: Annotated[int | None, typer.Option("--port", help=PORT_HELP)] = None,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = "mlret",
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help=BATCH_HELP)] = None,
    prune: Annotated[bool, typer.Option("--prune", help=PRUNE_HELP)] = False,
    auth_token: Annotated[str | None, TOKEN_OPTION] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
) -> None:
    """Index a knowledge base: encode only new or changed records; safe to re-run after an interruption."""
    from ..encoder import MultilingualEncoder
    from ..kb import load_kb
    from ..store import ChromaStore

    where = _where(db, host, port)
    records = load_kb(kb)  # validated in full before anything is opened or written
    with _library_errors():
        encoder = MultilingualEncoder(model, backend=backend)
        store = ChromaStore(
            encoder,
            collection=collection,
            auth_token=auth_token,
            batch_size=batch_size,
            show_progress_bar=not quiet,
            **where,
        )
        result = store.add(records)
        pruned = 0
        if prune:
            keep = {r.id for r in records}
            stale = [i for i in store.ids() if i not in keep]
            store.delete(stale)
            pruned = len(stale)
        total = store.count()
    typer.echo(
        f"indexed {len(records)} records from {kb} into {store.location} collection {collection!r}: "
        f"encoded {result.encoded} (added {result.added}, updated {result.updated}), "
        f"unchanged {result.unchanged}" + (f", pruned {pruned}" if prune else "") + f"; {total} stored"
    )


@app.command("query")
@one_line_errors
def query_command(
    text: Annotated[str, typer.Argument(help="The question, in any language.")],
    db: Annotated[Path | None, typer.Option("--db", help=DB_HELP)] = None,
    host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
    port: Annotated[int | None, typer.Option("--port", help=PORT_HELP)] = None,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = "mlret",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of hits.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"query", "hits"} as JSON.')] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model to encode the question; default: the one that indexed the collection."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    auth_token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """Retrieve the best knowledge-base entries for a question (score = cosine similarity)."""
    from ..retriever import MultilingualRetriever

    where = _where(db, host, port)
    if db is not None and not db.is_dir():
        raise MlretError(
            f"no database at {db}; index a knowledge base first (mlret index --kb FILE --db {db})"
        )
    with _library_errors():
        retriever = MultilingualRetriever.open(
            model,
            collection=collection,
            auth_token=auth_token,
            show_progress_bar=False,
            create=False,
            backend=backend,
            **where,
        )
        hits = retriever.retrieve(text, k=k)
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
    for name, kw in (
        ("#", {"justify": "right"}),
        ("score", {"justify": "right"}),
        ("label", {}),
        ("id", {}),
        ("text", {"overflow": "fold"}),
    ):
        table.add_column(name, **kw)
    for rank, h in enumerate(hits, start=1):
        table.add_row(str(rank), f"{h.score:.3f}", h.label or "", h.id, h.text)
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
