"""``mlret finetune``: a thin call into :func:`mlret_rag.finetune.finetune`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from . import app
from ._common import MODEL_HELP, QUIET_HELP, one_line_errors


@app.command("finetune")
@one_line_errors
def finetune_command(
    kb: Annotated[Path, typer.Option("--kb", help="Labelled knowledge base: .jsonl or .csv file.")],
    queries: Annotated[Path, typer.Option("--queries", help="Labelled training queries in any language.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the fine-tuned model to.")],
    model: Annotated[str | None, typer.Option("--model", help=MODEL_HELP)] = None,
    negatives: Annotated[str, typer.Option("--negatives", help="standard | weighted | hard.")] = "weighted",
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training queries.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Anchors per training batch.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed for every random choice.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
) -> None:
    """Fine-tune the encoder so questions in any language retrieve the KB's entries (weighted negatives)."""
    from ..finetune import finetune
    from ..kb import load_kb, load_queries

    kb_records = load_kb(kb)  # both files validated before a model is loaded
    query_records = load_queries(queries)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    result = finetune(kb_records, query_records, out=out, model=model, negatives=negatives, epochs=epochs,
                      batch_size=batch_size, seed=seed, overwrite=overwrite, show_progress_bar=not quiet)
    s = result.stats
    typer.echo(
        f"fine-tuned on {s['examples']} anchors ({s['labels']} labels, {s['index_records']} KB records; "
        f"{s.get('queries_label_not_in_kb', 0)} queries with a label not in the KB and "
        f"{s.get('queries_without_label', 0)} without a label skipped) in {result.seconds:.0f} s; "
        f"saved to {result.out}"
    )
