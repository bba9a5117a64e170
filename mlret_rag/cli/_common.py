"""Shared pieces of the subcommands: option spellings and turning known errors into one line."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..errors import MlretError

F = TypeVar("F", bound=Callable[..., Any])

# Shared option spellings (DESIGN.md): every subcommand that takes one spells it the same way.
MODEL_HELP = "Model name, local folder, or nothing for the bundled multilingual-e5-small."
QUIET_HELP = "Hide progress bars."
BACKEND_HELP = "Inference engine: torch, onnx or onnx-int8 (default: onnx when onnxruntime is installed)."


def one_line_errors(func: F) -> F:
    """Run a subcommand; print known user errors as ``error: ...`` on one line and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        try:
            return func(*args, **kwargs)
        except (MlretError, OSError, ValueError, TypeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
