"""``MLRetEmbedding``: a LlamaIndex embedding whose query and text paths stay separate."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

from mlret_rag.bundled import BUNDLED_MODEL_NAME
from mlret_rag.encoder import MultilingualEncoder


class MLRetEmbedding(BaseEmbedding):
    """Cross-lingual embeddings from :class:`mlret_rag.MultilingualEncoder`.

    Queries go to ``encode_queries`` and texts to ``encode_documents``, so each side gets the model's own
    prompt. Vectors are L2-normalised: a dot product is the cosine similarity.

    Args:
        model: ``None`` for the bundled offline model, a model name, or a local model folder
            (``model_name=`` is accepted for it, as in LlamaIndex's HuggingFaceEmbedding).
        encoder: a ready ``MultilingualEncoder`` to share (then ``model``/``encoder_kwargs`` must be unset;
            they are filled from ``encoder.init_args``, so ``to_dict``/``from_dict`` rebuild the same model).
        encoder_kwargs: extra keyword arguments for ``MultilingualEncoder`` (e.g. ``device``, ``backend``).
        embed_batch_size: texts per batch (also the encoder's batch size unless ``encoder_kwargs`` sets it).

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from llama_index.embeddings.mlret import MLRetEmbedding

            Settings.embed_model = MLRetEmbedding()  # the bundled multilingual-e5-small
    """

    model: str | None = Field(default=None, description="Model name or folder; None = bundled model.")
    encoder_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for MultilingualEncoder."
    )
    _encoder: MultilingualEncoder = PrivateAttr()

    def __init__(
        self,
        model: str | None = None,
        *,
        encoder: MultilingualEncoder | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        embed_batch_size: int = 32,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        model_name = kwargs.pop("model_name", None)  # reported from the encoder; from_dict hands it back
        if model is None and encoder is None and model_name not in (None, BUNDLED_MODEL_NAME):
            model = model_name  # MLRetEmbedding(model_name=...) as with LlamaIndex's HuggingFaceEmbedding
        encoder_kwargs = dict(encoder_kwargs or {})
        if encoder is not None:
            if not isinstance(encoder, MultilingualEncoder):
                raise TypeError(f"encoder must be a MultilingualEncoder, got {type(encoder).__name__}")
            if model is not None or encoder_kwargs:
                raise ValueError("give either encoder= or model=/encoder_kwargs=, not both")
            encoder_kwargs = encoder.init_args  # what from_dict needs to rebuild this encoder
            model = encoder_kwargs.pop("model")
        else:
            encoder_kwargs.setdefault("batch_size", embed_batch_size)
            encoder = MultilingualEncoder(model, **encoder_kwargs)
        super().__init__(
            model=None if model is None else str(model),
            encoder_kwargs=encoder_kwargs,
            model_name=encoder.model_name,
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            **kwargs,
        )
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "MLRetEmbedding"

    @property
    def encoder(self) -> MultilingualEncoder:
        """The underlying core encoder."""
        return self._encoder

    # query path -------------------------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.encode_queries([query])[0].tolist()

    def _get_query_embeddings(self, queries: list[str]) -> list[Embedding]:
        return self._encoder.encode_queries(queries).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    # text (document) path -----------------------------------------------------------------------
    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.encode_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encoder.encode_documents(texts).tolist()

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
