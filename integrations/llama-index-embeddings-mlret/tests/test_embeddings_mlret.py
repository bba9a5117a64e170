"""MLRetEmbedding: separate query/text paths equal to the core's vectors, batching, async, errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.embeddings.mlret import MLRetEmbedding

from mlret_rag import MultilingualEncoder

TEXTS = [
    "The pharmacy opens at 9 am on weekdays.",
    "Refunds are paid within 14 days.",
    "You can reset your password from the login page.",
    "Parking is free for customers on Sundays.",
    "Our support line answers in English and Spanish.",
]


@pytest.fixture(scope="module")
def embed(encoder):
    return MLRetEmbedding(encoder=encoder, embed_batch_size=2)


def test_is_a_llamaindex_embedding(embed):
    assert isinstance(embed, BaseEmbedding)
    assert MLRetEmbedding.class_name() == "MLRetEmbedding"
    assert embed.model_name == "multilingual-e5-small"
    assert embed.to_dict()["class_name"] == "MLRetEmbedding"


def test_query_and_text_paths_match_core_and_differ(embed, encoder):
    text = "¿A qué hora abre la farmacia?"
    q = np.array(embed.get_query_embedding(text), dtype=np.float32)
    t = np.array(embed.get_text_embedding(text), dtype=np.float32)
    np.testing.assert_allclose(q, encoder.encode_queries([text])[0], atol=1e-6)
    np.testing.assert_allclose(t, encoder.encode_documents([text])[0], atol=1e-6)
    assert float(q @ t) < 0.999  # e5 prompts differ: "query: " vs "passage: "


def test_batches_match_core(embed, encoder):
    vectors = np.array(embed.get_text_embedding_batch(TEXTS), dtype=np.float32)
    assert vectors.shape == (len(TEXTS), encoder.dimension)
    np.testing.assert_allclose(vectors, encoder.encode_documents(TEXTS), atol=1e-5)


@pytest.mark.asyncio
async def test_async_twins_equal_sync(embed):
    assert await embed.aget_query_embedding("Wann öffnet die Apotheke?") == pytest.approx(
        embed.get_query_embedding("Wann öffnet die Apotheke?"), abs=1e-6
    )
    a = await embed.aget_text_embedding_batch(TEXTS)
    np.testing.assert_allclose(np.array(a), np.array(embed.get_text_embedding_batch(TEXTS)), atol=1e-5)


def test_default_is_bundled_model_and_kwargs_pass_through():
    embed = MLRetEmbedding(encoder_kwargs={"device": "cpu", "max_seq_length": 64}, embed_batch_size=8)
    assert embed.model_name == "multilingual-e5-small"
    assert embed.encoder.max_seq_length == 64
    assert embed.encoder.batch_size == 8


def test_bad_arguments_are_named(encoder):
    with pytest.raises(ValueError, match="either encoder="):
        MLRetEmbedding("some-model", encoder=encoder)
    with pytest.raises(TypeError, match="MultilingualEncoder"):
        MLRetEmbedding(encoder="not an encoder")
    with pytest.raises(ValueError, match="device"):
        MLRetEmbedding(encoder_kwargs={"device": "tpu"})
    with pytest.raises(ValueError, match="backend"):  # encoder keywords such as backend= pass through
        MLRetEmbedding(encoder_kwargs={"backend": "tpu"})
    with pytest.raises(TypeError, match="no_such_option"):
        MLRetEmbedding(encoder_kwargs={"no_such_option": 1})


def test_shared_bundled_encoder_round_trips(encoder):
    data = MLRetEmbedding(encoder=encoder).to_dict()
    assert data["model"] is None  # the bundled model
    again = MLRetEmbedding.from_dict(data)
    assert again.encoder.fingerprint == encoder.fingerprint
    assert again.encoder.backend == encoder.backend


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy instead
        shutil.copy2(src, dst)


def test_shared_local_encoder_round_trips_instead_of_becoming_the_bundled_one(encoder, tmp_path):
    folder = tmp_path / "tuned"
    shutil.copytree(encoder.model_path, folder, ignore=shutil.ignore_patterns("onnx"), copy_function=_link_or_copy)
    local = MultilingualEncoder(folder, backend="torch", max_seq_length=128, prompts={"query": "question: "})
    embed = MLRetEmbedding(encoder=local)
    assert embed.to_dict()["model"] == str(folder)
    again = MLRetEmbedding.from_json(embed.to_json())
    assert again.encoder.model_path == local.model_path
    assert (again.encoder.backend, again.encoder.max_seq_length) == ("torch", 128)
    assert again.encoder.prompts == {"query": "question: ", "document": "passage: "}
    assert again.encoder.fingerprint == local.fingerprint
    assert again.get_query_embedding("Wo ist meine Bestellung?") == pytest.approx(
        embed.get_query_embedding("Wo ist meine Bestellung?"), abs=1e-6)


def test_model_name_picks_the_model_as_in_huggingface_embedding(encoder, tmp_path):
    folder = tmp_path / "named"
    shutil.copytree(encoder.model_path, folder, ignore=shutil.ignore_patterns("onnx"), copy_function=_link_or_copy)
    embed = MLRetEmbedding(model_name=str(folder), encoder_kwargs={"backend": "torch"})
    assert embed.encoder.model_path == MultilingualEncoder(folder, backend="torch").model_path
    assert embed.to_dict()["model"] == str(folder)
    assert MLRetEmbedding(model_name="multilingual-e5-small").to_dict()["model"] is None  # the bundled one
