"""Shared pieces of the subcommands: option spellings, the store-location options parsed once into a
:class:`~mlret_rag.StoreLocation`, and turning known errors into one line."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..errors import MlretError
from ..location import StoreLocation

F = TypeVar("F", bound=Callable[..., Any])

# Shared option spellings (DESIGN.md): every subcommand that takes one spells it the same way.
MODEL_HELP = "Model name, local folder, or nothing for the bundled multilingual-e5-small."
QUIET_HELP = "Hide progress bars."
BACKEND_HELP = "Inference engine: torch, onnx or onnx-int8 (default: onnx when onnxruntime is installed)."
DB_HELP = "Embedded Chroma folder (default: $MLRET_HOME/db). Not with --host."
HOST_HELP = "Chroma server host (use with --port) instead of an embedded folder."
PORT_HELP = "Chroma server port (default 8000)."
SSL_HELP = "Talk https to the Chroma server (--host)."
HEADER_HELP = ("Extra HTTP header sent to the Chroma server, KEY=VALUE (repeatable; or set MLRET_CHROMA_HEADERS to "
               "a JSON object, which keeps the values off the command line).")
HEADERS_ENV = "MLRET_CHROMA_HEADERS"  # {"KEY": "VALUE", ...}: the headers when --header is not given
TENANT_HELP = "Chroma tenant (default: Chroma's default_tenant)."
DATABASE_HELP = "Chroma database within the tenant (default: default_database)."
TOKEN_HELP = "Bearer token for a Chroma server that requires one (or set MLRET_CHROMA_TOKEN)."
TIMEOUT_HELP = "Server mode: seconds to wait for each answer of the Chroma server (default 60)."

# The options that make up a store location: parameter name -> (type, option). Every subcommand that
# opens a store gets them from @location_options and receives one StoreLocation.
LOCATION_OPTIONS: dict[str, Any] = {
    "db": Annotated[Path | None, typer.Option("--db", help=DB_HELP)],
    "host": Annotated[str | None, typer.Option("--host", help=HOST_HELP)],
    "port": Annotated[int | None, typer.Option("--port", help=PORT_HELP)],
    "ssl": Annotated[bool, typer.Option("--ssl", help=SSL_HELP)],
    "header": Annotated[list[str] | None, typer.Option("--header", help=HEADER_HELP)],
    "tenant": Annotated[str | None, typer.Option("--tenant", help=TENANT_HELP)],
    "database": Annotated[str | None, typer.Option("--database", help=DATABASE_HELP)],
    "auth_token": Annotated[str | None, typer.Option("--auth-token", envvar="MLRET_CHROMA_TOKEN", help=TOKEN_HELP)],
    "timeout": Annotated[float | None, typer.Option("--timeout", envvar="MLRET_CHROMA_TIMEOUT", min=0.001,
                                                    help=TIMEOUT_HELP)],
}
FROM_OPTIONS: Any = None  # the default of a subcommand's ``location`` parameter: @location_options fills it


def location_options(func: F) -> F:
    """Give a subcommand the store-location options (:data:`LOCATION_OPTIONS`, in place of its
    ``location`` parameter); it is called with them parsed once into ``location: StoreLocation``."""
    signature = inspect.signature(func, eval_str=True)
    clash = sorted(set(signature.parameters) & set(LOCATION_OPTIONS))
    if "location" not in signature.parameters or clash:  # a mistake in this package's own commands
        raise TypeError(f"@location_options needs a 'location' parameter and none named {', '.join(LOCATION_OPTIONS)}"
                        f" ({func.__name__}: {'no location parameter' if not clash else 'has ' + ', '.join(clash)})")
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "location":
            params.append(param)
            continue
        params += [inspect.Parameter(name, param.kind, annotation=kind, default=False if name == "ssl" else None)
                   for name, kind in LOCATION_OPTIONS.items()]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in LOCATION_OPTIONS}
        return func(*args, location=parse_location(**values), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


def parse_location(
    *,
    db: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    ssl: bool | None = False,
    header: list[str] | None = None,
    tenant: str | None = None,
    database: str | None = None,
    auth_token: str | None = None,
    timeout: float | None = None,
) -> StoreLocation:
    """The :class:`StoreLocation` the location options give (``--header KEY=VALUE``, repeatable, or else
    ``$MLRET_CHROMA_HEADERS``)."""
    if db is not None and host is not None:
        raise MlretError("give either --db (embedded folder) or --host/--port (Chroma server), not both")
    headers, headers_from = _given_headers(header)
    if host is None:
        alone = [opt for opt, given in (("--port", port is not None), ("--ssl", bool(ssl)), (headers_from, bool(headers)))
                 if given]
        if alone:
            raise MlretError(f"{', '.join(alone)} need{'s' if len(alone) == 1 else ''} --host")
    return StoreLocation(path=db, host=host, port=port, ssl=bool(ssl), headers=headers, auth_token=auth_token,
                         tenant=tenant, database=database, timeout=timeout)


class _JSONObject(list):
    """A JSON object as its (name, value) pairs, in order and with any repeated name."""


def _given_headers(header: list[str] | None) -> tuple[dict[str, str], str]:
    """The headers of ``--header`` (or, when none is given, of ``$MLRET_CHROMA_HEADERS``) and which gave them.
    Messages name the header, never a value: it may be a secret."""
    if header:
        pairs, given_as = [], "--header"
        for item in header:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise MlretError("--header must look like KEY=VALUE, got one without '=' or a name")
            pairs.append((name, value))
    else:
        given_as = "$" + HEADERS_ENV
        try:
            pairs = json.loads(os.environ.get(HEADERS_ENV) or "{}", object_pairs_hook=_JSONObject)
        except json.JSONDecodeError:
            pairs = None
        if not isinstance(pairs, _JSONObject) or not all(isinstance(value, str) for _, value in pairs):
            raise MlretError(f"{given_as} must be a JSON object of header names to string values, "
                             'e.g. {"X-Team": "search"}')
    headers: dict[str, str] = {}
    for name, value in pairs:
        if name.strip().lower() in {n.lower() for n in headers}:
            raise MlretError(f"{given_as} {name.strip()} is given twice")
        headers[name.strip()] = value
    return headers, given_as


def location_args(location: StoreLocation) -> list[str]:
    """The options that give ``location`` again (the inverse of :func:`parse_location`), e.g. for the
    worker processes of ``mlret index --workers``; all but the auth token and the headers, which go in
    ``$MLRET_CHROMA_TOKEN`` and ``$MLRET_CHROMA_HEADERS`` (:func:`location_env`) so that ``ps`` does not
    show them."""
    out = ["--db", str(location.path)] if location.path is not None else []
    if location.host is not None:
        out += ["--host", location.host, "--port", str(location.port)]
    out += ["--ssl"] if location.ssl else []
    for option, value in (("--tenant", location.tenant), ("--database", location.database),
                          ("--timeout", location.timeout)):
        if value is not None:
            out += [option, str(value)]
    return out


def location_env(location: StoreLocation) -> dict[str, str]:
    """The environment that, with :func:`location_args`, gives ``location`` again (auth token, headers).
    The headers are always set, so that ``$MLRET_CHROMA_HEADERS`` of the caller's environment cannot add to them."""
    token = {} if location.auth_token is None else {"MLRET_CHROMA_TOKEN": location.auth_token}
    return {**token, HEADERS_ENV: json.dumps(dict(location.headers))}


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
