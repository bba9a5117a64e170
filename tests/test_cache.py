"""build_once: built once, reused while valid, rebuilt when not, never half-written; cache_dir's override."""

from __future__ import annotations

import pytest

from mlret_rag.cache import build_once, cache_dir


def test_cache_dir_follows_mlret_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLRET_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home"


def test_file_artefact_is_built_once_recorded_and_rebuilt_when_invalid(tmp_path):
    target, calls, recorded = tmp_path / "cache" / "model.bin", [], []

    def build(tmp):
        calls.append(tmp)
        (tmp / "model.bin").write_bytes(b"weights %d" % len(calls))

    def is_valid(path):
        return path.is_file() and path.read_bytes().startswith(b"weights")

    for _ in range(2):
        assert build_once(target, build, is_valid=is_valid, record=recorded.append) == target
    assert len(calls) == 1 and recorded == [target] and target.read_bytes() == b"weights 1"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not a temporary file's mode
    target.write_bytes(b"garbage")
    build_once(target, build, is_valid=is_valid, record=recorded.append)
    assert target.read_bytes() == b"weights 2" and recorded == [target, target]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin", "model.bin.lock"]


def test_folder_artefact_replaces_an_invalid_copy(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")

    def build(tmp):
        (tmp / "config.json").write_text("{}")

    build_once(target, build, is_valid=lambda p: (p / "config.json").is_file())
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.lock"]


def test_a_failed_build_leaves_the_old_copy_and_no_temporary_files(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")

    def build(tmp):
        (tmp / "model.bin").write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        build_once(target, build, is_valid=lambda p: False, record=lambda p: pytest.fail("recorded"))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.bin.lock"]
