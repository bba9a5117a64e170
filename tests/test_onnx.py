"""ONNX Runtime backends: same vectors as PyTorch, export reused, damaged files rebuilt."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlret_rag.encoder import MultilingualEncoder
from mlret_rag.onnx_backend import BACKEND_FILES, MANIFEST, OnnxBackendError

# Eight scripts: Latin, Cyrillic, Han, Japanese kana, Arabic, Devanagari, Greek, Hangul; one text
# longer than the 512-token window so truncation is compared too.
SENTENCES = [
    "How do I reset my password?",
    "Wie setze ich mein Passwort zurück?",
    "Как сбросить пароль?",
    "如何重置我的密码？",
    "パスワードをリセットするには？",
    "كيف أعيد تعيين كلمة المرور؟",
    "पासवर्ड कैसे रीसेट करें?",
    "Πώς επαναφέρω τον κωδικό μου;",
    "비밀번호를 재설정하려면 어떻게 해야 하나요?",
    "Kaip atkurti slaptažodį?",
    "Turn on the lights in the kitchen and set the thermostat to twenty degrees. " * 50,
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("side", ["queries", "documents"])
def test_onnx_fp32_matches_torch(torch_encoder, onnx_encoder, side):
    expected = getattr(torch_encoder, f"encode_{side}")(SENTENCES)
    got = getattr(onnx_encoder, f"encode_{side}")(SENTENCES)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, expected).min() >= 0.9999


@pytest.mark.parametrize("side", ["queries", "documents"])
def test_onnx_int8_close_to_torch(torch_encoder, int8_encoder, side):
    expected = getattr(torch_encoder, f"encode_{side}")(SENTENCES)
    got = getattr(int8_encoder, f"encode_{side}")(SENTENCES)
    assert got.dtype == np.float32
    assert _cosines(got, expected).min() >= 0.99


def test_query_and_document_paths_differ(torch_encoder, onnx_encoder):
    queries, documents = onnx_encoder.encode_queries(SENTENCES[:3]), onnx_encoder.encode_documents(SENTENCES[:3])
    assert _cosines(queries, documents).max() < 0.999  # the e5 prompts differ
    assert _cosines(documents, torch_encoder.encode_documents(SENTENCES[:3])).min() >= 0.9999


def test_order_restored_and_batching_invariant(onnx_encoder):
    texts = [SENTENCES[i] for i in (10, 0, 3, 10, 5)]
    together = onnx_encoder.encode_queries(texts)
    alone = np.vstack([onnx_encoder.encode_queries([t]) for t in texts])
    assert _cosines(together, alone).min() >= 0.99999
    assert np.allclose(together[0], together[3], atol=1e-6)


def test_backends_share_model_identity(torch_encoder, onnx_encoder, int8_encoder):
    for enc, name in ((torch_encoder, "torch"), (onnx_encoder, "onnx"), (int8_encoder, "onnx-int8")):
        assert enc.backend == name
    assert torch_encoder.fingerprint == onnx_encoder.fingerprint == int8_encoder.fingerprint
    assert onnx_encoder.prompts == torch_encoder.prompts == {"query": "query: ", "document": "passage: "}
    assert onnx_encoder.max_seq_length == torch_encoder.max_seq_length == 512
    assert onnx_encoder.dimension == 384
    assert onnx_encoder.encode_queries([]).shape == (0, 384)


def test_onnx_loads_pytorch_only_when_asked():
    fresh = MultilingualEncoder(backend="onnx")
    assert fresh._st_model is None
    assert fresh.sentence_transformer.get_embedding_dimension() == 384  # lazily loaded for training


def test_bad_backend_arguments():
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, onnx-int8; got 'tensorrt'"):
        MultilingualEncoder(backend="tensorrt")
    with pytest.raises(ValueError, match="device='cuda'"):
        MultilingualEncoder(backend="onnx", device="cuda")


def test_unsupported_layout_suggests_torch(tmp_path, onnx_encoder):
    folder = _linked_copy(onnx_encoder.model_path, tmp_path / "cls-model", with_onnx=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 384, "pooling_mode": "cls"}))
    with pytest.raises(OnnxBackendError, match='pooling is .cls.*backend="torch"'):
        MultilingualEncoder(folder, backend="onnx")


@pytest.mark.slow
def test_export_reused_then_damage_rebuilt(tmp_path, onnx_encoder, torch_encoder):
    folder = _linked_copy(onnx_encoder.model_path, tmp_path / "model", with_onnx=True)
    onnx_dir = folder / "onnx"
    before = {name: (onnx_dir / name).stat().st_ino for name in BACKEND_FILES.values()}

    # Copied files have new mtimes: verified by sha256, reused, not re-exported.
    MultilingualEncoder(folder, backend="onnx")
    MultilingualEncoder(folder, backend="onnx-int8")
    assert {name: (onnx_dir / name).stat().st_ino for name in BACKEND_FILES.values()} == before

    # Truncate the fp32 file and overwrite the int8 one with same-size garbage (new inodes, so the
    # shared cache's files are never touched).
    fp32, int8 = onnx_dir / "model.onnx", onnx_dir / "model_int8.onnx"
    _replace_with(fp32, fp32.read_bytes()[: fp32.stat().st_size // 2])
    _replace_with(int8, os.urandom(int8.stat().st_size))
    rebuilt = MultilingualEncoder(folder, backend="onnx-int8")
    assert int8.stat().st_size > 100_000_000 and fp32.stat().st_size > 100_000_000
    expected = torch_encoder.encode_queries(SENTENCES)
    assert _cosines(rebuilt.encode_queries(SENTENCES), expected).min() >= 0.99
    manifest = json.loads((onnx_dir / MANIFEST).read_text())
    assert set(manifest["files"]) == set(BACKEND_FILES.values())
    inode = fp32.stat().st_ino
    again = MultilingualEncoder(folder, backend="onnx")  # the rebuilt file is reused
    assert fp32.stat().st_ino == inode
    assert _cosines(again.encode_queries(SENTENCES), expected).min() >= 0.9999


def _linked_copy(src: Path, dest: Path, with_onnx: bool) -> Path:
    """Copy a model folder, hard-linking the big read-only weights (never modified in place)."""
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_dir() or (rel.parts[0] == "onnx" and not with_onnx) or path.name.startswith("."):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".onnx":
            shutil.copyfile(path, target)  # new mtime: forces the sha256 check
        elif path.suffix == ".safetensors":
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        else:
            shutil.copy2(path, target)
    return dest


def _replace_with(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".damaged")
    tmp.write_bytes(data)
    os.replace(tmp, path)
