"""The int8 recipe: SmoothQuant leaves the fp32 function unchanged, and int8 stays close to fp32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_onnx import SENTENCES, _cosines

from mlret_rag.encoder import MultilingualEncoder
from mlret_rag.onnx_backend import BACKEND_FILES, _calibration_feeds, _read_manifest
from mlret_rag.onnx_quantize import _input_channel_maxima, _insert_smoothing, _split_weighted_nodes


@pytest.fixture(scope="module")
def fp32_model(onnx_encoder):
    return onnx_encoder.model_path, onnx_encoder._onnx.path


def _run(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_smoothing_keeps_the_fp32_function(fp32_model):
    folder, path = fp32_model
    model = onnx.load(str(path))
    smoothed, keep_fp32 = _split_weighted_nodes(model)
    # 12 layers: fused QKV, attention output and FFN up are smoothed; the 12 FFN down-projections are not.
    assert (len(smoothed), len(keep_fp32)) == (36, 12)
    feeds = list(_calibration_feeds(folder))
    assert len(feeds) >= 150 and all(f["input_ids"].shape == f["attention_mask"].shape for f in feeds)
    probe = feeds[0]
    before = _run(model, probe)
    maxima = _input_channel_maxima(model, sorted({n.input[0] for n in smoothed}), feeds[:20])
    assert len(model.graph.output) == 1  # the calibration outputs were removed again
    ratios = [m.max() / np.median(m) for m in maxima.values()]
    assert max(ratios) > 10  # the outlier channels that make plain per-tensor int8 lossy
    _insert_smoothing(model, smoothed, maxima, alpha=0.6)
    assert sum(n.op_type == "Mul" and n.name.startswith("SmoothQuant_") for n in model.graph.node) == 36
    after = _run(model, probe)
    assert np.allclose(after, before, rtol=1e-3, atol=1e-3)


def test_int8_export_records_its_fidelity(int8_encoder):
    manifest = _read_manifest(int8_encoder._onnx.path.parent)
    assert manifest["files"][BACKEND_FILES["onnx-int8"]]["calibration_min_cosine"] >= 0.999


@pytest.mark.parametrize("side", ["queries", "documents"])
def test_int8_close_to_fp32(side, onnx_encoder, int8_encoder):
    fp32 = getattr(onnx_encoder, f"encode_{side}")(SENTENCES)
    int8 = getattr(int8_encoder, f"encode_{side}")(SENTENCES)
    # Measured here: smoothed 0.99965 at worst; plain per-tensor dynamic int8 0.9971 (queries), 0.9982.
    assert _cosines(int8, fp32).min() >= 0.999


@pytest.mark.slow
def test_low_int8_fidelity_is_warned(tmp_path, monkeypatch, caplog, onnx_encoder):
    import logging

    from test_onnx import _linked_copy

    from mlret_rag import onnx_backend

    folder = _linked_copy(onnx_encoder.model_path, tmp_path / "model", with_onnx=True)
    (folder / "onnx" / BACKEND_FILES["onnx-int8"]).unlink()
    monkeypatch.setattr(onnx_backend, "INT8_WARN_BELOW_COSINE", 1.01)  # any real int8 file is below this
    with caplog.at_level(logging.WARNING, logger="mlret_rag.onnx_backend"):
        MultilingualEncoder(folder, backend="onnx-int8")
    assert any("int8 vectors of" in r.getMessage() and "mlret eval --backend onnx-int8" in r.getMessage()
               for r in caplog.records)
