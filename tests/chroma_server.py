"""A real Chroma server for tests: ``chroma run`` on a free 127.0.0.1 port, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
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
