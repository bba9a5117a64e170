"""LangChain's standard embeddings unit suite, plus the adapter's own argument checks."""

from __future__ import annotations

import pytest
from langchain_mlret import MLRetEmbeddings
from langchain_tests.unit_tests import EmbeddingsUnitTests


class TestMLRetEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MLRetEmbeddings]:
        return MLRetEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"encoder_kwargs": {"device": "cpu"}}


def test_bad_arguments_are_named(encoder) -> None:
    with pytest.raises(ValueError, match="either encoder="):
        MLRetEmbeddings("some-model", encoder=encoder)
    with pytest.raises(TypeError, match="MultilingualEncoder"):
        MLRetEmbeddings(encoder="not an encoder")
    with pytest.raises(ValueError, match="device"):
        MLRetEmbeddings(encoder_kwargs={"device": "tpu"})
    with pytest.raises(ValueError, match="backend"):  # encoder keywords such as backend= pass through
        MLRetEmbeddings(encoder_kwargs={"backend": "tpu"})
    with pytest.raises(ValueError, match="no_such_field"):  # pydantic names the unknown keyword
        MLRetEmbeddings(no_such_field=1)
