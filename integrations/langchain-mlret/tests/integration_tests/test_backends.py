"""MLRetEmbeddings on every inference backend gives the core encoder's vectors for that backend."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_mlret import MLRetEmbeddings


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_each_backend_through_langchain(backend):
    from mlret_rag import MultilingualEncoder

    embeddings = MLRetEmbeddings(encoder_kwargs={"backend": backend})
    assert embeddings.encoder.backend == backend
    core = MultilingualEncoder(backend=backend)
    query = "¿Cómo restablezco mi contraseña?"
    docs = ["Reset your password with the 'Forgot password' link.", "Parcels arrive in three days."]
    np.testing.assert_allclose(embeddings.embed_query(query), core.encode_queries([query])[0], atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_documents(docs), core.encode_documents(docs), atol=1e-6)
    scores = np.asarray(embeddings.embed_documents(docs)) @ np.asarray(embeddings.embed_query(query))
    assert scores.argmax() == 0
