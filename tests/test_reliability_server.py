"""Issue 14, item 5: a frozen (SIGSTOP) Chroma server gives one clear line within the timeout, and dropped
connections are retried with backoff; both against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil
import pytest
from chroma_server import HOST, ServerProxy, chroma_server_address, run_chroma_server  # noqa: F401 (fixture)
from typer.testing import CliRunner

from mlret_rag.cli import app
from mlret_rag.errors import StoreConnectionError, StoreTimeoutError
from mlret_rag.kb import KBRecord
from mlret_rag.store import ChromaStore

RECORDS = [KBRecord(id=f"r{i}", text=t) for i, t in enumerate(
    ["How do I reset my password?", "Where is my parcel?", "How do I return an item?"])]


def server_process(port: int) -> psutil.Process:
    """The child of this test process that listens on ``port``: the socket, not the command line, names it,
    since a process an earlier test left behind may still carry a reused port number in its arguments."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in child.net_connections("tcp")):
                return child
    raise LookupError(f"no child of this test process listens on port {port}")


@contextlib.contextmanager
def frozen(proc: psutil.Process):
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def test_a_frozen_server_gives_one_line_within_the_timeout(encoder, tmp_path):
    with run_chroma_server(tmp_path / "data") as (host, port):
        store = ChromaStore(encoder, host=host, port=port, collection="frozen", timeout=2.0,
                            show_progress_bar=False)
        store.add(RECORDS)
        vectors = encoder.encode_queries(["Wo ist mein Paket?"])
        with frozen(server_process(port)):
            start = time.monotonic()
            with pytest.raises(StoreTimeoutError) as err:
                store.query(vectors, k=1)
            elapsed = time.monotonic() - start
            assert elapsed < 4.0  # one timeout, not retried
            assert str(err.value).startswith(f"could not get an answer from the Chroma server at {host}:{port} "
                                             "within 2s")
            assert isinstance(err.value, StoreConnectionError)

            start = time.monotonic()
            result = CliRunner().invoke(app, ["query", "Wo ist mein Paket?", "--host", host, "--port", str(port),
                                              "--collection", "frozen", "--timeout", "1.5"])
            elapsed = time.monotonic() - start
            assert "MLRET_CHROMA_TIMEOUT" not in os.environ  # passed to the store, not through the environment
            assert result.exit_code == 1
            err_line = result.stderr.strip()
            assert "\n" not in err_line and err_line.startswith(
                f"error: could not get an answer from the Chroma server at {host}:{port} within 1.5s")
            assert elapsed < 5.0
        # thawed: the same store answers again
        assert store.query(vectors, k=1)[0][0].id == "r1"
        store.close()


def test_dropped_connections_are_retried_with_backoff(encoder, chroma_server_address, caplog):  # noqa: F811
    proxy = ServerProxy(chroma_server_address, drop=2)
    try:
        start = time.monotonic()
        with caplog.at_level("WARNING", logger="mlret_rag.store"):
            store = ChromaStore(encoder, host=HOST, port=proxy.port, collection="flaky", show_progress_bar=False)
        assert proxy.seen >= 3 and time.monotonic() - start >= 1.0  # backoff 0.5 s, then 1 s
        retries = [r.getMessage() for r in caplog.records if "retrying (" in r.getMessage()]
        assert [m.split("retrying ")[1] for m in retries] == ["(1 of 3)", "(2 of 3)"]
        assert all(m.startswith(f"Chroma server at {HOST}:{proxy.port}: ") for m in retries)
        store.add(RECORDS)
        assert store.count() == 3
        store.close()
    finally:
        proxy.close()

    proxy = ServerProxy(chroma_server_address, drop=100)  # down for good: bounded, then one error
    try:
        start = time.monotonic()
        with pytest.raises(StoreConnectionError, match=rf"cannot reach the Chroma server at {HOST}:{proxy.port}"):
            ChromaStore(encoder, host=HOST, port=proxy.port, collection="flaky", retries=2, show_progress_bar=False)
        assert proxy.seen == 3 and time.monotonic() - start < 5.0
    finally:
        proxy.close()
