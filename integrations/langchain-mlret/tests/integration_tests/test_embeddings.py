"""LangChain's standard embeddings integration suite, and query/document paths equal to the core's."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_mlret import MLRetEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests


class TestMLRetEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MLRetEmbeddings]:
        return MLRetEmbeddings

    @pytest.fixture
    def model(self, encoder) -> MLRetEmbeddings:
        return MLRetEmbeddings(encoder=encoder)


def test_query_and_document_paths_match_core_and_differ(encoder) -> None:
    emb = MLRetEmbeddings(encoder=encoder)
    text = "Où est ma commande ?"
    q = np.array(emb.embed_query(text), dtype=np.float32)
    d = np.array(emb.embed_documents([text, "Refunds take 14 days."]), dtype=np.float32)
    np.testing.assert_allclose(q, encoder.encode_queries([text])[0], atol=1e-6)
    np.testing.assert_allclose(d, encoder.encode_documents([text, "Refunds take 14 days."]), atol=1e-6)
    assert float(q @ d[0]) < 0.999  # e5's "query: " and "passage: " prompts differ


async def test_async_equals_sync(encoder) -> None:
    emb = MLRetEmbeddings(encoder=encoder)
    assert await emb.aembed_query("Hallo") == pytest.approx(emb.embed_query("Hallo"), abs=1e-6)
    assert np.allclose(await emb.aembed_documents(["a b", "c d"]), emb.embed_documents(["a b", "c d"]), atol=1e-6)
