"""``mlret check``: verify a collection's records and vectors (``--repair`` re-encodes the damaged ones)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ..errors import MlretError
from ..location import StoreLocation  # read at run time by @location_options
from . import app
from ._common import BACKEND_HELP, FROM_OPTIONS, location_options, one_line_errors
from .store_commands import COLLECTION_HELP, _library_errors


@app.command("check")
@one_line_errors
@location_options
def check_command(
    location: StoreLocation = FROM_OPTIONS,
    collection: Annotated[str, typer.Option("--collection", help=COLLECTION_HELP)] = "mlret",
    repair: Annotated[bool, typer.Option("--repair", help="Re-encode and rewrite damaged records.")] = False,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Only counts, encoder metadata and vectors (no hash or self-search checks).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    model: Annotated[str | None, typer.Option(
        "--model", help="Model for --repair; default: the one that indexed the collection.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
) -> None:
    """Check that every stored record has its vector and hash and the encoder metadata is intact.

    Exits 1 when damage remains (after --repair: when the repair did not fix it)."""
    from .._identity import recorded_model
    from ..encoder import MultilingualEncoder
    from ..store import ChromaStore, read_collection_info

    if location.path is not None and not location.path.is_dir():
        raise MlretError(f"no database at {location.path}")
    with _library_errors():
        if model is None:
            model = recorded_model(read_collection_info(location, collection=collection) or {})
        store = ChromaStore(MultilingualEncoder(model, backend=backend), location, collection=collection,
                            show_progress_bar=False, create=False)
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
