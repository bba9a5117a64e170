"""ONNX Runtime backends: same vectors as PyTorch, export reused, damaged files rebuilt."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from support import SENTENCES, cosines, linked_copy, replace_with

from mlret_rag import MultilingualEncoder
from mlret_rag.onnx_backend import BACKEND_FILES, MANIFEST, OnnxBackendError


@pytest.mark.parametrize("side", ["queries", "documents"])
def test_onnx_fp32_matches_torch(torch_encoder, onnx_encoder, side):
    expected = getattr(torch_encoder, f"encode_{side}")(SENTENCES)
    got = getattr(onnx_encoder, f"encode_{side}")(SENTENCES)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines(got, expected).min() >= 0.9999


@pytest.mark.parametrize("side", ["queries", "documents"])
def test_onnx_int8_close_to_torch(torch_encoder, int8_encoder, side):
    expected = getattr(torch_encoder, f"encode_{side}")(SENTENCES)
    got = getattr(int8_encoder, f"encode_{side}")(SENTENCES)
    assert got.dtype == np.float32
    assert cosines(got, expected).min() >= 0.99


def test_query_and_document_paths_differ(torch_encoder, onnx_encoder):
    queries, documents = onnx_encoder.encode_queries(SENTENCES[:3]), onnx_encoder.encode_documents(SENTENCES[:3])
    assert cosines(queries, documents).max() < 0.999  # the e5 prompts differ
    assert cosines(documents, torch_encoder.encode_documents(SENTENCES[:3])).min() >= 0.9999


def test_order_restored_and_batching_invariant(onnx_encoder):
    texts = [SENTENCES[i] for i in (10, 0, 3, 10, 5)]
    together = onnx_encoder.encode_queries(texts)
    alone = np.vstack([onnx_encoder.encode_queries([t]) for t in texts])
    assert cosines(together, alone).min() >= 0.99999
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
    assert fresh.engine_info.torch_loaded is False
    assert fresh.sentence_transformer.get_embedding_dimension() == 384  # lazily loaded for training
    assert fresh.engine_info.torch_loaded is True


def test_bad_backend_arguments():
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, onnx-int8; got 'tensorrt'"):
        MultilingualEncoder(backend="tensorrt")
    with pytest.raises(ValueError, match="device='cuda'"):
        MultilingualEncoder(backend="onnx", device="cuda")


def test_unsupported_layout_suggests_torch(tmp_path, onnx_encoder):
    folder = linked_copy(onnx_encoder.model_path, tmp_path / "cls-model", with_onnx=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 384, "pooling_mode": "cls"}))
    with pytest.raises(OnnxBackendError, match='pooling is .cls.*backend="torch"'):
        MultilingualEncoder(folder, backend="onnx")


@pytest.mark.slow
def test_export_reused_then_damage_rebuilt(tmp_path, onnx_encoder, torch_encoder):
    folder = linked_copy(onnx_encoder.model_path, tmp_path / "model", with_onnx=True)
    onnx_dir = folder / "onnx"
    before = {name: (onnx_dir / name).stat().st_ino for name in BACKEND_FILES.values()}

    # Copied files have new mtimes: verified by sha256, reused, not re-exported.
    MultilingualEncoder(folder, backend="onnx")
    MultilingualEncoder(folder, backend="onnx-int8")
    assert {name: (onnx_dir / name).stat().st_ino for name in BACKEND_FILES.values()} == before

    # Truncate the fp32 file and overwrite the int8 one with same-size garbage (new inodes, so the
    # shared cache's files are never touched).
    fp32, int8 = onnx_dir / "model.onnx", onnx_dir / "model_int8.onnx"
    replace_with(fp32, fp32.read_bytes()[: fp32.stat().st_size // 2])
    replace_with(int8, os.urandom(int8.stat().st_size))
    rebuilt = MultilingualEncoder(folder, backend="onnx-int8")
    assert int8.stat().st_size > 100_000_000 and fp32.stat().st_size > 100_000_000
    expected = torch_encoder.encode_queries(SENTENCES)
    assert cosines(rebuilt.encode_queries(SENTENCES), expected).min() >= 0.99
    manifest = json.loads((onnx_dir / MANIFEST).read_text())
    assert set(manifest["files"]) == set(BACKEND_FILES.values())
    inode = fp32.stat().st_ino
    again = MultilingualEncoder(folder, backend="onnx")  # the rebuilt file is reused
    assert fp32.stat().st_ino == inode
    assert cosines(again.encode_queries(SENTENCES), expected).min() >= 0.9999


def test_engine_info_names_backend_reason_files_and_manifest(torch_encoder, onnx_encoder, int8_encoder):
    from mlret_rag.onnx_backend import calibration_sha256

    info = int8_encoder.engine_info
    assert (info.backend, info.reason) == ("onnx-int8", "backend='onnx-int8' was asked for")
    assert [p.name for p in info.files] == [BACKEND_FILES["onnx-int8"]]
    assert info.manifest["files"][BACKEND_FILES["onnx-int8"]]["calibration_sha256"] == calibration_sha256()
    assert "calibration_sha256" not in info.manifest["files"][BACKEND_FILES["onnx"]]
    assert [p.name for p in onnx_encoder.engine_info.files] == [BACKEND_FILES["onnx"]]
    torch_info = torch_encoder.engine_info
    assert torch_info.backend == "torch" and torch_info.torch_loaded
    assert torch_info.files == (torch_encoder.model_path,) and torch_info.manifest == {}


def test_the_default_engine_is_chosen_once_with_its_reason_logged(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="mlret_rag.engines"):
        chosen = MultilingualEncoder()
    assert chosen.engine_info.reason == "default: onnxruntime is installed"
    assert [r.getMessage() for r in caplog.records if r.name == "mlret_rag.engines"] == [
        "inference engine onnx: default: onnxruntime is installed"]
