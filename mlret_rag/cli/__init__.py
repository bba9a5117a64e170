"""The ``mlret`` command line: one thin subcommand per library entry point.

Subcommands live in sibling modules and register themselves on :data:`app`; nothing heavy is imported
until a subcommand runs, so ``mlret --help`` loads no model.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mlret",
    help="Cross-lingual retrieval for RAG: index a knowledge base, query it in any language, fine-tune, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import (  # noqa: F401  (they register subcommands)
    check_command,
    eval_command,
    finetune_command,
    store_commands,
)


def main() -> None:
    """Console-script entry point."""
    app()
