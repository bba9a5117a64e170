"""The int8 recipe: SmoothQuant leaves the fp32 function unchanged, and int8 stays close to fp32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from support import SENTENCES, cosines, linked_copy

from mlret_rag import MultilingualEncoder
from mlret_rag.onnx_backend import BACKEND_FILES, calibration_feeds
from mlret_rag.onnx_quantize import input_channel_maxima, insert_smoothing, split_weighted_nodes


@pytest.fixture(scope="module")
def fp32_model(onnx_encoder):
    return onnx_encoder.model_path, onnx_encoder.engine_info.files[0]


def _run(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_smoothing_keeps_the_fp32_function(fp32_model):
    folder, path = fp32_model
    model = onnx.load(str(path))
    smoothed, keep_fp32 = split_weighted_nodes(model)
    # 12 layers: fused QKV, attention output and FFN up are smoothed; the 12 FFN down-projections are not.
    assert (len(smoothed), len(keep_fp32)) == (36, 12)
    feeds = list(calibration_feeds(folder))
    assert len(feeds) >= 150 and all(f["input_ids"].shape == f["attention_mask"].shape for f in feeds)
    probe = feeds[0]
    before = _run(model, probe)
    maxima = input_channel_maxima(model, sorted({n.input[0] for n in smoothed}), feeds[:20])
    assert len(model.graph.output) == 1  # the calibration outputs were removed again
    ratios = [m.max() / np.median(m) for m in maxima.values()]
    assert max(ratios) > 10  # the outlier channels that make plain per-tensor int8 lossy
    insert_smoothing(model, smoothed, maxima, alpha=0.6)
    assert sum(n.op_type == "Mul" and n.name.startswith("SmoothQuant_") for n in model.graph.node) == 36
    after = _run(model, probe)
    assert np.allclose(after, before, rtol=1e-3, atol=1e-3)


def test_int8_export_records_its_fidelity(int8_encoder):
    manifest = int8_encoder.engine_info.manifest
    # Measured: 0.9997 with earlier onnxruntime releases, 0.99896 with onnxruntime 1.32 (the same on two builds)
    assert manifest["files"][BACKEND_FILES["onnx-int8"]]["calibration_min_cosine"] >= 0.998


@pytest.mark.parametrize("side", ["queries", "documents"])
def test_int8_close_to_fp32(side, onnx_encoder, int8_encoder):
    fp32 = getattr(onnx_encoder, f"encode_{side}")(SENTENCES)
    int8 = getattr(int8_encoder, f"encode_{side}")(SENTENCES)
    # Measured here: smoothed 0.99965 at worst; plain per-tensor dynamic int8 0.9971 (queries), 0.9982.
    assert cosines(int8, fp32).min() >= 0.999


@pytest.mark.slow
def test_low_int8_fidelity_is_warned(tmp_path, monkeypatch, caplog, onnx_encoder):
    import logging

    from mlret_rag import onnx_backend

    folder = linked_copy(onnx_encoder.model_path, tmp_path / "model", with_onnx=True)
    (folder / "onnx" / BACKEND_FILES["onnx-int8"]).unlink()
    monkeypatch.setattr(onnx_backend, "INT8_WARN_BELOW_COSINE", 1.01)  # any real int8 file is below this
    with caplog.at_level(logging.WARNING, logger="mlret_rag.onnx_backend"):
        MultilingualEncoder(folder, backend="onnx-int8")
    assert any("int8 vectors of" in r.getMessage() and "mlret eval --backend onnx-int8" in r.getMessage()
               for r in caplog.records)


@pytest.mark.slow
def test_a_changed_calibration_set_rebuilds_the_int8_file_only(tmp_path, monkeypatch, int8_encoder):
    from mlret_rag import onnx_backend

    folder = linked_copy(int8_encoder.model_path, tmp_path / "model", with_onnx=True)
    onnx_dir = folder / "onnx"
    MultilingualEncoder(folder, backend="onnx-int8")  # copied files pass their sha256 check: reused
    inodes = {name: (onnx_dir / name).stat().st_ino for name in BACKEND_FILES.values()}
    edited = tmp_path / "calibration.jsonl"
    lines = onnx_backend.calibration_path().read_text(encoding="utf-8").splitlines(keepends=True)
    edited.write_text("".join(lines[:40]), encoding="utf-8")
    monkeypatch.setattr(onnx_backend, "calibration_path", lambda: edited)
    rebuilt = MultilingualEncoder(folder, backend="onnx-int8")
    assert (onnx_dir / BACKEND_FILES["onnx"]).stat().st_ino == inodes[BACKEND_FILES["onnx"]]
    assert (onnx_dir / BACKEND_FILES["onnx-int8"]).stat().st_ino != inodes[BACKEND_FILES["onnx-int8"]]
    entry = rebuilt.engine_info.manifest["files"][BACKEND_FILES["onnx-int8"]]
    assert entry["calibration_sha256"] == onnx_backend.calibration_sha256() != int8_encoder.engine_info.manifest[
        "files"][BACKEND_FILES["onnx-int8"]]["calibration_sha256"]
    assert cosines(rebuilt.encode_queries(SENTENCES), int8_encoder.encode_queries(SENTENCES)).min() >= 0.99


def test_the_calibration_set_is_read_with_the_kb_loader():
    from mlret_rag import load_kb
    from mlret_rag.onnx_backend import calibration_path

    records = load_kb(calibration_path())
    assert len(records) == 159
    assert {r.metadata["side"] for r in records} == {"document", "query"}
    assert len({r.lang for r in records}) == 8
