"""Issue 14, item 4: indexing into a full file system gives one line naming the path and the free space,
(a real tmpfs). Converging after space is freed was checked by hand, not here yet."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from typer.testing import CliRunner

from mlret_rag.cli import app

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root to mount a small tmpfs (the disk-full case is not tested here)",
)


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs mounted for this test."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:  # root without CAP_SYS_ADMIN, or no mount binary
        pytest.skip(f"cannot mount a tmpfs here: {getattr(exc, 'stderr', None) or exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_names_the_path_and_free_space_then_converges(encoder, tmp_path, small_fs):
    kb = tmp_path / "kb.jsonl"
    rows = [{"id": f"r{i}", "text": f"Entry {i}: how to configure option {i} of the router. " + "x" * 400}
            for i in range(1500)]
    kb.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    db = small_fs / "db"
    first = CliRunner().invoke(app, ["index", "--kb", str(kb), "--db", str(db), "--quiet", "--batch-size", "100"])
    assert first.exit_code == 1, first.output
    line = first.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: the file system of {db} is full (")
    assert " free of 3.0 MiB)" in line

    # Not asserted yet: the re-run after `mount -o remount,size=64m` converged by hand (1,500 stored, check
    # clean) but once took over 120 s on the first write after the failed compaction; see issue 14.
