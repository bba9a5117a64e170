"""Issue 14, item 4: indexing into a full file system gives one line naming the path and the free space,
and once space is freed the same command converges: exactly the KB stored, `mlret check` clean, and only
what was not committed encoded again (a real tmpfs, real `mlret` processes).

The tmpfs is 48 MiB, filled by a ballast file to 3 MiB free; space is freed by deleting the ballast (no
remount). Both runs are separate processes, each under a timeout so that a hang fails the test: an
embedded Chroma client that saw the failed write keeps a SQLite write transaction open (a hot
``chroma.sqlite3-journal``), and a later write from the same process (in-process, the same shared
Chroma system per path) waits on it for good. A new process rolls it back and goes through.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from mlret_rag import ChromaStore
from mlret_rag.cli import app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="needs root to mount a small tmpfs (the disk-full case is not tested here)"),
]
SIZE_MIB, FREE_MIB = 48, 3
N, BATCH = 1500, 100
RUN_TIMEOUT = 300  # seconds per `mlret index` run: a hang fails the test instead of stalling the suite


@pytest.fixture
def small_fs(tmp_path):
    """A 48 MiB tmpfs mounted for this test, with a ballast file leaving 3 MiB free."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m", "tmpfs", str(mount)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:  # root without CAP_SYS_ADMIN, or no mount binary
        pytest.skip(f"cannot mount a tmpfs here: {getattr(exc, 'stderr', None) or exc}")
    try:
        with (mount / "ballast").open("wb") as ballast:
            os.posix_fallocate(ballast.fileno(), 0, shutil.disk_usage(mount).free - (FREE_MIB << 20))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def mlret(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python -m mlret_rag.cli ARGS`` in its own process; returns it and its wall time."""
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "mlret_rag.cli", *args], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired as exc:
        err = (exc.stderr or b"").decode(errors="replace")[-2000:]  # always bytes, even with text=True
        pytest.fail(f"`mlret {' '.join(args)}` hung for over {RUN_TIMEOUT}s; its stderr:\n{err}")
    return done, time.monotonic() - start


def test_disk_full_names_the_path_and_free_space_then_converges(encoder, tmp_path, small_fs):
    kb = tmp_path / "kb.jsonl"  # short texts (cheap to encode), the bytes are in the metadata
    rows = [{"id": f"r{i}", "text": f"Entry {i}: how to configure option {i} of the router.",
             "metadata": {"notes": "x" * 400}} for i in range(N)]
    kb.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    db = small_fs / "db"
    index = ["index", "--kb", str(kb), "--db", str(db), "--quiet", "--batch-size", str(BATCH)]

    first, _ = mlret(*index)
    assert first.returncode == 1, first.stdout + first.stderr
    errors = [x for x in first.stderr.splitlines() if x.startswith("error:")]  # warnings may come before
    assert len(errors) == 1, first.stderr
    line = errors[0]
    assert "\n" not in line and line.startswith(f"error: the file system of {db} is full ("), line
    assert f" free of {SIZE_MIB:.1f} MiB)" in line and "run the same command again" in line, line

    (small_fs / "ballast").unlink()  # free the space; no remount
    with ChromaStore(encoder, path=db, create=False, show_progress_bar=False) as store:
        committed = store.count()  # what a new process finds: every batch written before the failure
    assert 0 < committed < N and committed % BATCH == 0, committed

    again, seconds = mlret(*index)
    assert again.returncode == 0, again.stdout + again.stderr
    summary = re.search(r"encoded (\d+) \(added (\d+), updated (\d+)\), unchanged (\d+); (\d+) stored", again.stdout)
    assert summary, again.stdout
    assert [int(x) for x in summary.groups()] == [N - committed, N - committed, 0, committed, N], again.stdout
    print(f"disk full: {committed} of {N} committed before the failure; the re-run encoded {N - committed} "
          f"in {seconds:.1f}s")

    check = CliRunner().invoke(app, ["check", "--db", str(db)])
    assert check.exit_code == 0 and f"checked {N} of {N} records, no damage found" in check.output, check.output
    with ChromaStore(encoder, path=db, create=False, show_progress_bar=False) as store:
        assert store.count() == N and sorted(store.ids()) == sorted(r["id"] for r in rows)
        hit = store.query(encoder.encode_queries(["How do I configure option 1234 of the router?"]), k=1)[0][0]
        assert hit.text == rows[int(hit.id[1:])]["text"] and hit.metadata["notes"] == "x" * 400


# a write waiting on the failed write's SQLite transaction would hang inside Chroma, where a signal cannot
# reach it: the thread method ends the whole run instead of stalling CI
@pytest.mark.timeout(240, method="thread")
def test_in_process_the_full_store_is_released_and_a_new_one_converges(encoder, small_fs):
    from mlret_rag import DiskFullError, KBRecord, StoreClosedError

    records = [KBRecord(id=f"r{i}", text=f"Entry {i}: how to configure option {i} of the router.",
                        metadata={"notes": "x" * 400}) for i in range(N)]
    db = small_fs / "db"
    store = ChromaStore(encoder, path=db, batch_size=BATCH, show_progress_bar=False)
    with pytest.raises(DiskFullError, match=f"the file system of {re.escape(str(db))} is full"):
        store.add(records)
    with pytest.raises(StoreClosedError, match="after the disk filled up: open a new store once space is freed"):
        store.count()

    (small_fs / "ballast").unlink()
    with ChromaStore(encoder, path=db, batch_size=BATCH, show_progress_bar=False) as again:  # same process
        result = again.add(records)
        assert again.count() == N and again.verify().ok
    assert result.unchanged % BATCH == 0 and 0 < result.unchanged < N and result.encoded == N - result.unchanged
