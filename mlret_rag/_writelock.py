"""One writer per embedded Chroma database, across processes: a file lock inside the database folder.

Chroma's embedded mode loses vectors when two processes write to one collection at once (issue 14:
522 of 3,000 records without a vector), so every write of :class:`~mlret_rag.ChromaStore` to an
embedded database holds ``<db>/mlret-writer.lock`` (an OS file lock, released by the kernel if the
holder dies). The holder describes itself in ``<db>/mlret-writer.json`` (pid, host, command, since) so
a second writer can say who it waits for. Readers never take the lock. Within one process all stores
of a database share one reentrant lock (Chroma serialises the writes of one process itself).

Opening a database for the first time is a write too: Chroma's first client creates its tables, and two
processes doing that at once both fail ("table collections already exists", "database is locked"). So
until ``<db>/mlret-ready`` says the database was created whole, opening it holds the lock as well.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import StoreBusyError

LOCK_NAME = "mlret-writer.lock"
HOLDER_NAME = "mlret-writer.json"
READY_NAME = "mlret-ready"
# Seconds a write (or a first open) waits for another process's writer lock before giving up.
DEFAULT_LOCK_TIMEOUT = 30.0

logger = logging.getLogger("mlret_rag.store")


class WriterLock:
    """The writer lock of the embedded database in ``folder``; :meth:`hold` waits at most ``timeout`` s."""

    def __init__(self, folder: Path, *, timeout: float) -> None:
        self.folder = folder
        self.timeout = timeout
        self.path = folder / LOCK_NAME
        self.holder_path = folder / HOLDER_NAME
        # One instance per lock file in this process, shared by all threads: nested and concurrent
        # holds inside one process just count, so only other processes are kept out.
        self._lock = FileLock(self.path, thread_local=False, is_singleton=True)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for a write; raise :class:`StoreBusyError` after ``timeout`` seconds of waiting."""
        first = not self._lock.is_locked
        if first:
            self._acquire()
        else:
            self._lock.acquire()  # already held by this process: reentrant, never waits
        try:
            if first:
                self._write_holder()
            yield
        finally:
            if self._lock.lock_counter == 1:
                with contextlib.suppress(OSError):
                    self.holder_path.unlink()
            self._lock.release()

    @contextlib.contextmanager
    def opening(self) -> Iterator[None]:
        """Hold the lock while a client opens a database not yet marked ready, then mark it ready.

        A folder this process cannot write (a read-only copy) is opened as is: its tables exist already,
        or the open itself reports the problem. The caller has made sure ``folder`` is a folder.
        """
        ready = self.folder / READY_NAME
        if ready.exists() or not os.access(self.folder, os.W_OK):
            yield
            return
        with self.hold():
            yield
            with contextlib.suppress(OSError):
                ready.touch()

    def _acquire(self) -> None:
        try:
            self._lock.acquire(timeout=0)
            return
        except Timeout:
            pass
        holder = describe(self.read_holder())
        logger.warning(
            "another process is writing to %s (%s); waiting up to %gs for it to finish",
            self.folder, holder, self.timeout,
        )
        start = time.monotonic()
        try:
            self._lock.acquire(timeout=self.timeout)
        except Timeout:
            holder = describe(self.read_holder())
            raise StoreBusyError(
                f"another process is writing to the database {self.folder} ({holder}); gave up after "
                f"{time.monotonic() - start:.0f}s (lock file {self.path}); let it finish, or wait longer "
                "with lock_timeout= / --lock-timeout"
            ) from None

    def _write_holder(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.holder_path.with_name(f".{HOLDER_NAME}.{os.getpid()}")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(info), encoding="utf-8")
            os.replace(tmp, self.holder_path)

    def read_holder(self) -> dict[str, Any] | None:
        """What the current holder wrote about itself, or ``None`` when it cannot be read."""
        try:
            info = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None


def describe(info: dict[str, Any] | None) -> str:
    """``pid 123 on host h, running `mlret index ...` since ...`` (or a note that it is unknown)."""
    if not info:
        return "holder unknown"
    text = f"pid {info.get('pid')} on host {info.get('host')}"
    if info.get("command"):
        text += f", running `{info['command']}`"
    if info.get("since"):
        text += f", since {info['since']}"
    return text
