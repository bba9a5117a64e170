"""The package's cache root and the one way things are built into it: once, under a lock, atomically.

Every derived artefact (the converted bundled model, the ONNX exports) goes through :func:`build_once`:
readers that find a valid copy take no lock; a builder holds a file lock, builds into a temporary
sibling (a file or a folder), renames it into place and only then records it, so a reader sees the old
copy or the new one, never half of one, and concurrent first uses build it once.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Root of mlret-rag's cache: ``$MLRET_HOME`` if set, else the user cache directory."""
    env = os.environ.get("MLRET_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mlret-rag"))


def build_once(
    target: Path,
    build: Callable[[Path], None],
    *,
    is_valid: Callable[[Path], bool],
    record: Callable[[Path], None] | None = None,
    lock: Path | None = None,
) -> Path:
    """Return ``target``, building it first when ``is_valid(target)`` is false.

    Args:
        target: the file or folder to produce.
        build: called with a fresh, empty temporary folder beside ``target``; it writes the artefact
            either into that folder (a folder artefact) or as the one file ``<tmp>/<target.name>``
            (a file artefact), which is then moved into place.
        is_valid: cheap check of an existing ``target`` (a manifest comparison), called before and again
            after the lock is taken, so a copy another process finished meanwhile is reused.
        record: called with ``target`` after the rename, to write its manifest entry (file artefacts
            keep their mtime across the rename, so a recorded mtime stays true).
        lock: the lock file (default ``<target>.lock``); artefacts built from one another can share one.
    """
    target = Path(target)
    if is_valid(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock or target.with_name(target.name + ".lock"))):
        if is_valid(target):  # another process finished while we waited
            return target
        if target.exists():
            logger.warning("%s is damaged or stale; rebuilding it.", target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(tmp)
            _move_into_place(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if record is not None:
            record(target)
    return target


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename the built file (``<tmp>/<name>``) or folder (``tmp``) onto ``target``, replacing an old copy."""
    umask = os.umask(0)
    os.umask(umask)
    built_file = tmp / target.name
    if built_file.is_file() and [p.name for p in tmp.iterdir()] == [target.name]:
        with open(built_file, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(built_file, 0o666 & ~umask)  # the usual permissions, not a temporary file's 0600
        os.replace(built_file, target)
        return
    if target.exists():
        trash = target.with_name(f".{target.name}.trash-{os.getpid()}")
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True) if trash.is_dir() else trash.unlink()
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    os.replace(tmp, target)
