"""``mlret check``: verify a collection's records and vectors (``--repair`` re-encodes the damaged ones)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MlretError
from . import app
from ._common import BACKEND_HELP, one_line_errors
from .store_commands import (
    COLLECTION_HELP,
    DB_HELP,
    HOST_HELP,
    PORT_HELP,
    TOKEN_OPTION,
    _library_errors,
    _where,
)


@app.command("check")
@one_line_errors
def check_command(
    db: Annotated[Path | None, typer.Option("--db", help=DB_HELP)] = None,
    host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
    port: Annotated[int | None, typer.Option("--port", help=PORT_HELP)] = None,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = "mlret",
    repair: Annotated[bool, typer.Option("--repair", help="Re-encode and rewrite damaged records.")] = False,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Only counts, encoder metadata and vectors (no hash or self-search checks).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="Model for --repair; default: the one that indexed the collection.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    auth_token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """Check that every stored record has its vector and hash and the encoder metadata is intact.

    Exits 1 when damage remains (after --repair: when the repair did not fix it)."""
    from .._identity import recorded_model
    from ..encoder import MultilingualEncoder
    from ..store import ChromaStore, read_collection_info

    where = _where(db, host, port)
    if db is not None and not db.is_dir():
        raise MlretError(f"no database at {db}")
    with _library_errors():
        if model is None:
            model = recorded_model(read_collection_info(collection=collection, auth_token=auth_token, **where) or {})
        store = ChromaStore(MultilingualEncoder(model, backend=backend), collection=collection,
                            auth_token=auth_token, show_progress_bar=False, create=False, **where)
        with store:
            report = store.verify(full=not quick)
            fixed = 0
            if repair and report.damaged:
                fixed = store.repair(report)
                after = store.verify(full=not quick)
            else:
                after = report
    if as_json:
        sys.stdout.write(json.dumps({
            "ok": after.ok, "count": after.count, "checked": after.checked, "problems": list(after.problems),
            "missing_vector": list(report.missing_vector), "bad_vector": list(report.bad_vector),
            "hash_mismatch": list(report.hash_mismatch), "unreachable": list(report.unreachable),
            "repaired": fixed,
        }) + "\n")
    else:
        typer.echo(report.summary())
        if repair and report.damaged:
            typer.echo(f"repaired {fixed} records; now: {after.summary()}")
        elif report.damaged:
            typer.echo("run `mlret check --repair` (same options) to re-encode the damaged records")
    if not after.ok:
        raise typer.Exit(1)
