"""Where a store lives: one :class:`StoreLocation` value, and opening a Chroma client on it.

A location is an embedded database folder (``path``), a Chroma server (``host``, ``port``, ``ssl``,
``headers``, ``auth_token``, ``tenant``, ``database``), or a chromadb client you built yourself
(``client``, used as is). Every entry point that opens a store (:class:`~mlret_rag.ChromaStore`,
:meth:`~mlret_rag.MultilingualRetriever.open`, ``read_collection_info``, the CLI and both framework
adapters) takes one ``location=`` or the same fields as keywords.

Server mode: chromadb 1.5's ``HttpClient`` has no timeout of its own (its httpx session is built with
``timeout=None``) and already talks to the server while it is constructed, so :meth:`StoreLocation.open_client`
first asks for a heartbeat under ``connect_timeout`` / ``timeout``, then sets those limits on the
client's session. :func:`connection_errors` turns transport failures into one-line
:class:`~mlret_rag.errors.StoreConnectionError` naming host:port; :func:`retrying` retries reads after a
dropped or refused connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict

from ._writelock import DEFAULT_LOCK_TIMEOUT, WriterLock
from .errors import StoreConnectionError, StoreTimeoutError

DEFAULT_PORT = 8000
# Server mode: seconds to wait for a TCP connection, and for each answer (MLRET_CHROMA_CONNECT_TIMEOUT and
# MLRET_CHROMA_TIMEOUT override them).
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 60.0
# Reads (get, count, query, heartbeat) are retried this many times after a dropped or refused
# connection, waiting 0.5 s, 1 s, 2 s ... (at most 4 s) in between; writes, timeouts and the store's
# own refusals are never retried.
DEFAULT_RETRIES = 3

logger = logging.getLogger("mlret_rag.store")  # the store's messages, under one logger

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_SERVER_ONLY = ("port", "ssl", "headers", "auth_token")


def default_db_path() -> Path:
    """Folder of the default embedded database: ``$MLRET_HOME/db`` (or the user cache dir's ``db``)."""
    from .cache import cache_dir

    return cache_dir() / "db"


class LocationKeywords(TypedDict, total=False):
    """The fields of :class:`StoreLocation`, accepted as keywords wherever ``location=`` is."""

    path: str | os.PathLike[str] | None
    host: str | None
    port: int | None
    ssl: bool | None
    headers: Mapping[str, str] | None
    auth_token: str | None
    tenant: str | None
    database: str | None
    client: Any
    timeout: float | None
    connect_timeout: float | None
    retries: int | None


@dataclass(frozen=True, repr=False)
class StoreLocation:
    """Where a :class:`~mlret_rag.ChromaStore` lives; validated once, when it is built.

    Give one of ``path``, ``host`` or ``client`` (nothing: the embedded default database,
    :func:`default_db_path`, resolved when the store is opened).

    Args:
        path: folder of an embedded database (created when missing).
        host: host name or address of a Chroma server (no ``http://``; see ``ssl``).
        port: the server's port (default 8000).
        ssl: talk https to the server (the certificate is checked).
        headers: extra HTTP headers sent with every request to the server.
        auth_token: sent as ``Authorization: Bearer <token>`` to the server.
        tenant, database: the Chroma tenant and database (default: Chroma's ``default_tenant`` /
            ``default_database``); an embedded database has them too.
        client: an existing chromadb client (``chromadb.PersistentClient``, ``HttpClient`` or ``Client``),
            used as is: no timeouts are set on it (configure it yourself), its tenant and database are
            its own, and closing the store leaves it open. A ``PersistentClient``'s folder gets the same
            writer lock as ``path=``.
        timeout: server mode: seconds to wait for each answer (default 60 or ``$MLRET_CHROMA_TIMEOUT``);
            a server that does not answer in time raises :class:`~mlret_rag.errors.StoreTimeoutError`.
        connect_timeout: server mode: seconds to wait for a connection (default 5 or
            ``$MLRET_CHROMA_CONNECT_TIMEOUT``).
        retries: server mode (also an injected ``HttpClient``): retries of a read after a dropped or
            refused connection (default 3). The timeouts and retries are accepted and unused for an
            embedded database.

    Raises:
        ValueError: a field is invalid or does not go with the others; the message names it.
    """

    path: Path | None = None
    host: str | None = None
    port: int | None = None
    ssl: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    auth_token: str | None = None
    tenant: str | None = None
    database: str | None = None
    client: Any = field(default=None, hash=False)
    timeout: float | None = None
    connect_timeout: float | None = None
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if self.path is not None:
            if not isinstance(self.path, (str, os.PathLike)):
                raise ValueError(f"path must be a folder path, got {self.path!r}")
            object.__setattr__(self, "path", Path(self.path))
        if not isinstance(self.ssl, bool):
            raise ValueError(f"ssl must be True or False, got {self.ssl!r}")  # noqa: TRY004 - every field: ValueError
        if self.client is not None:
            self._check_client()
        elif self.host is not None:
            if self.path is not None:
                raise ValueError("give either path (embedded database) or host/port (Chroma server), not both")
            if not isinstance(self.host, str) or not self.host.strip() or "/" in self.host:
                raise ValueError(f"host must be a host name or address (no scheme: for https give ssl=True), "
                                 f"got {self.host!r}")
            port = DEFAULT_PORT if self.port is None else self.port
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
            object.__setattr__(self, "port", port)
        else:
            given = [name for name in _SERVER_ONLY if self._given(name)]
            if given:
                raise ValueError(f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} host (a Chroma "
                                 "server); give --host or drop them")
        object.__setattr__(self, "headers", _ReadOnlyHeaders(_checked_headers(self.headers, self.auth_token)))
        for name in ("auth_token", "tenant", "database"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or "\n" in value or "\r" in value):
                shown = "a value on several lines" if isinstance(value, str) else type(value).__name__
                raise ValueError(f"{name} must be a string on one line, got {shown}")  # never the value: a secret
        for name in ("tenant", "database"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} must not be empty (leave it out for Chroma's default)")
        for name in ("timeout", "connect_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {self.retries!r}")

    def _given(self, name: str) -> bool:
        value = getattr(self, name)
        return bool(value) if name in ("ssl", "headers") else value is not None

    def _check_client(self) -> None:
        if self.path is not None or self.host is not None:
            raise ValueError("give either client (an existing chromadb client) or path/host, not both")
        own = [name for name in (*_SERVER_ONLY, "tenant", "database", "timeout", "connect_timeout")
               if self._given(name)]
        if own:
            raise ValueError(f"{', '.join(own)}: settings of the client itself; with client= set them when you "
                             "build the client")
        from chromadb.api import ClientAPI

        if not isinstance(self.client, ClientAPI):
            raise ValueError(  # noqa: TRY004 - every field: ValueError
                "client must be a chromadb client (chromadb.PersistentClient, HttpClient or Client), "
                f"got {type(self.client).__name__}")

    @classmethod
    def resolve(cls, location: StoreLocation | None = None, /, **keywords: Any) -> StoreLocation:
        """``location``, or one built from its fields given as keywords (``None`` values count as not
        given); both at once is a ``ValueError``, a keyword that is no field a ``TypeError``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (a store location takes "
                            f"location= or {', '.join(f.name for f in fields(cls))})")
        given = {k: v for k, v in keywords.items() if v is not None}
        if location is None:
            return cls(**given)
        if not isinstance(location, StoreLocation):
            raise TypeError(f"location must be a StoreLocation, got {type(location).__name__}")
        if given:
            raise ValueError(f"give either location= or {'=/'.join(given)}=, not both")
        return location

    # ---------------------------------------------------------------------------------------------
    def _client_settings(self) -> Any:
        try:
            return self.client.get_settings()
        except (AttributeError, NotImplementedError):  # a client without settings: treat it as in-process
            return None

    @property
    def remote(self) -> bool:
        """Whether the store talks HTTP to a server (``host``, or an injected ``HttpClient``)."""
        if self.client is None:
            return self.host is not None
        settings = self._client_settings()
        return "fastapi" in str(getattr(settings, "chroma_api_impl", "")).lower()

    @property
    def folder(self) -> Path | None:
        """The embedded database's folder (``path``, the default one, or an injected ``PersistentClient``'s
        persist directory); ``None`` for a server or an in-memory client."""
        if self.client is None:
            if self.host is not None:
                return None
            return self.path if self.path is not None else default_db_path()
        settings = self._client_settings()
        if self.remote or not getattr(settings, "is_persistent", False):
            return None
        return Path(settings.persist_directory)

    def describe(self) -> str:
        """The location for messages: ``embedded:<path>``, ``host:port``, or ``client:<folder | host:port |
        in-memory>``, plus the tenant and database when given."""
        if self.client is not None:
            settings = self._client_settings()
            if self.remote:
                where = f"{settings.chroma_server_host}:{settings.chroma_server_http_port}"
            else:
                where = str(self.folder) if self.folder is not None else "in-memory"
            return f"client:{where}"
        base = f"{self.host}:{self.port}" if self.host is not None else f"embedded:{self.folder}"
        scope = [f"{name} {getattr(self, name)!r}" for name in ("tenant", "database") if getattr(self, name)]
        return f"{base} ({', '.join(scope)})" if scope else base

    __str__ = describe

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "headers":
                if value:
                    shown.append(f"headers={ {k: '***' for k in value} !r}")
            elif f.name == "auth_token" and value is not None:
                shown.append("auth_token='***'")
            elif value != f.default and not (f.name == "port" and self.host is not None and value == DEFAULT_PORT):
                shown.append(f"{f.name}={value!r}")
        return f"StoreLocation({', '.join(shown)})"

    def timeouts(self) -> tuple[float, float]:
        """(read, connect) seconds for a server: the fields, else ``$MLRET_CHROMA_TIMEOUT`` /
        ``$MLRET_CHROMA_CONNECT_TIMEOUT``, else 60 / 5."""
        out = []
        for value, env, default in ((self.timeout, "MLRET_CHROMA_TIMEOUT", DEFAULT_TIMEOUT),
                                    (self.connect_timeout, "MLRET_CHROMA_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)):
            if value is None and os.environ.get(env):
                try:
                    value = float(os.environ[env])
                except ValueError:
                    raise ValueError(f"{env} must be a number of seconds, got {os.environ[env]!r}") from None
                if not value > 0:
                    raise ValueError(f"{env} must be a positive number of seconds, got {value!r}")
            out.append(float(default if value is None else value))
        return out[0], out[1]

    @property
    def read_timeout(self) -> float | None:
        """Seconds the store waits for each server answer (``None``: embedded, or an injected client)."""
        return self.timeouts()[0] if self.host is not None else None

    def request_headers(self) -> dict[str, str]:
        """The HTTP headers sent to the server: ``headers`` plus ``Authorization: Bearer <auth_token>``."""
        out = dict(self.headers)
        if self.auth_token:
            out["Authorization"] = f"Bearer {self.auth_token}"
        return out

    def open_client(self, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Any:
        """A chromadb client on this location (an injected ``client`` is returned as is).

        The first open of an embedded database creates its tables, so it holds the database's writer
        lock (waiting at most ``lock_timeout`` seconds for another process's write, like a write does).

        A server client gets ``timeout`` / ``connect_timeout`` on its HTTP session; the server is asked
        for a heartbeat with those limits first (retried like a read), because chromadb's ``HttpClient``
        already talks to the server while it is constructed, before any timeout can be set.

        Raises:
            StoreConnectionError: the server does not answer, refuses access, fails the TLS handshake, is
                not a Chroma server, or has no such tenant/database (the message names the location).
            StoreBusyError: a new embedded database stayed locked by another writer for ``lock_timeout`` s.
            ValueError: ``path`` is a file.
        """
        if self.client is not None:
            return self.client
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        scope = {name: getattr(self, name) for name in ("tenant", "database") if getattr(self, name) is not None}
        location = self.describe()
        if self.host is None:
            folder = self.folder
            assert folder is not None
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"database path {folder} is a file, expected a folder")
            folder.mkdir(parents=True, exist_ok=True)
            with self._missing_scope(location), WriterLock(folder, timeout=lock_timeout).opening():
                return chromadb.PersistentClient(path=str(folder), settings=settings, **scope)
        headers = self.request_headers() or None
        read_s, connect_s = self.timeouts()
        import httpx

        limits = httpx.Timeout(read_s, connect=connect_s)
        try:
            with connection_errors(location, remote=True, timeout=read_s):
                retrying(self.retries, location)(_preflight, self.host, self.port, headers, limits, self.ssl)
                with self._missing_scope(location):
                    client = chromadb.HttpClient(host=self.host, port=self.port, ssl=self.ssl, headers=headers,
                                                 settings=settings, **scope)
                session = getattr(getattr(client, "_server", None), "_session", None)
                if isinstance(session, httpx.Client):
                    session.timeout = limits
                else:  # a chromadb that builds its session differently: say so rather than hang silently
                    logger.warning("cannot set timeouts on this chromadb's HTTP client; a frozen server may hang")
                client.heartbeat()
        except StoreConnectionError:
            raise
        except Exception as exc:  # something answered, but not a Chroma server we can talk to
            raise StoreConnectionError(f"{location} did not answer as a Chroma server: {one_line(exc)[:160]}") from exc
        return client

    @contextlib.contextmanager
    def _missing_scope(self, location: str) -> Iterator[None]:
        """A tenant or database that does not exist: one line naming it instead of chromadb's NotFoundError."""
        from chromadb.errors import NotFoundError

        try:
            yield
        except NotFoundError as exc:
            tenant, database = self.tenant or "default_tenant", self.database or "default_database"
            missing = (f"has no tenant {tenant!r}" if "tenant" in str(exc).lower()
                       else f"has no database {database!r} in tenant {tenant!r}")
            raise StoreConnectionError(
                f"{location} {missing} (chroma: {one_line(exc)}); create it with chromadb.AdminClient, or leave "
                "tenant/database out for Chroma's defaults"
            ) from exc


class _ReadOnlyHeaders(dict):
    """``StoreLocation.headers``: a dict that refuses changes (the value is frozen) yet pickles and copies."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("StoreLocation.headers is read-only; build a new StoreLocation")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ReadOnlyHeaders, (dict(self),))


def _checked_headers(headers: Any, auth_token: str | None) -> dict[str, str]:
    headers = {} if headers is None else headers
    if not isinstance(headers, Mapping):
        raise ValueError(  # noqa: TRY004 - every field: ValueError
            f"headers must be a mapping of header names to values, got {type(headers).__name__}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not an HTTP header name (letters, digits and -, as str)")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            shown = "a value on several lines" if isinstance(value, str) else type(value).__name__
            raise ValueError(f"headers: the value of {name!r} must be a string on one line, got {shown}")
        if name.lower() in {n.lower() for n in out}:
            raise ValueError(f"headers: {name!r} is given twice")
        out[name] = value
    if auth_token is not None and "authorization" in {n.lower() for n in out}:
        raise ValueError("give auth_token or an Authorization header, not both")
    return out


def _preflight(host: str, port: int, headers: Mapping[str, str] | None, limits: Any, ssl: bool = False) -> None:
    """One heartbeat with timeouts, so that a frozen server fails here instead of hanging the client."""
    import httpx

    url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    scheme = "https" if ssl else "http"
    httpx.get(f"{scheme}://{url_host}:{port}/api/v2/heartbeat", headers=headers, timeout=limits)


def retrying(retries: int, location: str) -> Any:
    """A tenacity policy: ``retries`` more tries after a transient connection failure, backing off."""
    import tenacity

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=tenacity.wait_exponential(multiplier=0.5, max=4.0),
        retry=tenacity.retry_if_exception(_transient),
        before_sleep=lambda state: logger.warning(
            "Chroma server at %s: %s; retrying (%d of %d)",
            location, one_line(state.outcome.exception()), state.attempt_number, retries,
        ),
        reraise=True,
    )


def _transient(exc: BaseException) -> bool:
    """A dropped, reset or refused connection: worth another try. Timeouts, refusals and failed TLS
    handshakes are not."""
    import httpx

    return (isinstance(exc, (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError))
            and not _tls_failure(exc))


def _tls_failure(exc: BaseException) -> bool:
    import ssl

    seen: BaseException | None = exc
    for _ in range(8):  # the causes httpx chains: ConnectError <- SSLError
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def one_line(exc: BaseException | None) -> str:
    """An exception's message on one line (at most 200 characters), or its type's name."""
    return " ".join(str(exc).split())[:200] or type(exc).__name__


@contextlib.contextmanager
def connection_errors(location: str, *, remote: bool, timeout: float | None = None) -> Iterator[None]:
    """Re-raise a server client's connection failures as :class:`StoreConnectionError` naming ``location``."""
    if not remote:
        yield
        return
    import httpx
    from chromadb.errors import AuthorizationError, ChromaAuthError

    try:
        yield
    except httpx.TimeoutException as exc:
        kind = "connect to" if isinstance(exc, httpx.ConnectTimeout) else "get an answer from"
        limit = f" within {timeout:g}s" if timeout and not isinstance(exc, httpx.ConnectTimeout) else ""
        raise StoreTimeoutError(
            f"could not {kind} the Chroma server at {location}{limit} ({type(exc).__name__}); it may be frozen "
            "or overloaded; raise the limit with --timeout or MLRET_CHROMA_TIMEOUT"
        ) from exc
    except httpx.TransportError as exc:
        if _tls_failure(exc):
            raise StoreConnectionError(
                f"the TLS handshake with the Chroma server at {location} failed ({one_line(exc)}); check that it "
                "serves https with a trusted certificate, or drop --ssl / ssl=True for a plain-http server"
            ) from exc
        raise StoreConnectionError(f"cannot reach the Chroma server at {location}: {exc}") from exc
    except (AuthorizationError, ChromaAuthError) as exc:
        raise StoreConnectionError(f"the Chroma server at {location} refused access: {exc}") from exc
    except ValueError as exc:
        if "connect" in str(exc).lower():
            raise StoreConnectionError(
                f"cannot reach the Chroma server at {location} (is `chroma run --host ... --port ...` running?)"
            ) from exc
        raise
