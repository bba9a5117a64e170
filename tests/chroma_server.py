"""A real Chroma server for tests: ``chroma run`` on a free 127.0.0.1 port, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def chroma_executable() -> str:
    """The ``chroma`` CLI installed next to this Python (the virtualenv's), else the one on PATH."""
    local = Path(sys.executable).with_name("chroma")
    found = str(local) if local.exists() else shutil.which("chroma")
    if not found:
        raise RuntimeError("the `chroma` executable is missing; install chromadb into this environment")
    return found


@contextlib.contextmanager
def run_chroma_server(path: Path, *, timeout: float = 60.0) -> Iterator[tuple[str, int]]:
    """Start ``chroma run`` on ``path``, wait for its heartbeat, yield ``(host, port)``, then stop it."""
    import httpx

    port = free_port()
    log = path.parent / f"chroma-{port}.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [chroma_executable(), "run", "--host", HOST, "--port", str(port), "--path", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"chroma server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://{HOST}:{port}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chroma server on {HOST}:{port} did not answer within {timeout}s")
            time.sleep(0.1)
        yield HOST, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def chroma_server_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a real Chroma server started for this test session."""
    root = tmp_path_factory.mktemp("chroma-server")
    with run_chroma_server(root / "data") as address:
        yield address


class ServerProxy:
    """A TCP proxy on 127.0.0.1 to a real server: closes the first ``drop`` connections at once (a flaky
    network) and keeps every byte the client sends (to see the request headers)."""

    def __init__(self, target: tuple[str, int], drop: int = 0) -> None:
        self.target, self.drop, self.seen, self.sent = target, drop, 0, bytearray()
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.seen += 1
            if self.seen <= self.drop:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # RST: "connection reset" / "server disconnected"
                continue
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if record:
                    with self.lock:
                        self.sent += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def requests(self) -> list[str]:
        """The request heads sent so far (request line and headers), lower-cased."""
        with self.lock:
            text = bytes(self.sent).decode("latin-1").lower()
        return re.findall(r"(?:get|post|put|patch|delete) /\S* http/1\.1\r\n.*?\r\n\r\n", text, re.DOTALL)

    def close(self) -> None:
        self.sock.close()
