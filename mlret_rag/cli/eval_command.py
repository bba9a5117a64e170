"""``mlret eval``: score a model on a KB and labelled queries; print a table, optionally write the JSON."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from .._atomic import write_bytes_atomic
from ..errors import MlretError
from . import app
from ._common import BACKEND_HELP, MODEL_HELP, QUIET_HELP, one_line_errors


@app.command("eval")
@one_line_errors
def eval_command(
    kb: Annotated[Path, typer.Option("--kb", help="Knowledge base: .jsonl or .csv file.")],
    queries: Annotated[Path, typer.Option("--queries", help="Queries with label or relevant_ids: .jsonl or .csv.")],
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON to this file.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
) -> None:
    """Retrieve every query against the KB and report MRR, hit@1/3/10 and nDCG@10, overall and per language."""
    from ..encoder import MultilingualEncoder
    from ..evaluate import evaluate, format_report
    from ..kb import load_kb, load_queries

    kb_records = load_kb(kb)  # both files validated before a model is loaded
    query_records = load_queries(queries)
    if json_out is not None and json_out.is_dir():
        raise MlretError(f"--json {json_out}: is a folder, expected a file name")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            encoder = MultilingualEncoder(model, backend=backend, batch_size=batch_size)
            report = evaluate(encoder, kb_records, query_records, batch_size=batch_size,
                              show_progress_bar=not quiet)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise MlretError(str(exc)) from None
    for w in caught:
        if issubclass(w.category, UserWarning):
            typer.echo(f"warning: {w.message}", err=True)
    typer.echo(format_report(report))
    if json_out is not None:
        _write_json(json_out, report)
        if not quiet:
            typer.echo(f"\nwrote {json_out}", err=True)


def _write_json(path: Path, data: dict) -> None:
    """Write the report atomically, so a failure leaves no half-written file."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
