"""MLRetEmbedding on every inference backend gives the core encoder's vectors for that backend."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.embeddings.mlret import MLRetEmbedding


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_each_backend_through_llama_index(backend):
    from mlret_rag import MultilingualEncoder

    embed = MLRetEmbedding(encoder_kwargs={"backend": backend})
    core = MultilingualEncoder(backend=backend)
    query = "Wo ist meine Bestellung?"
    texts = ["Track your order from 'My orders'.", "Refunds take fourteen days."]
    np.testing.assert_allclose(embed.get_query_embedding(query), core.encode_queries([query])[0], atol=1e-6)
    np.testing.assert_allclose(embed.get_text_embedding_batch(texts), core.encode_documents(texts), atol=1e-6)
