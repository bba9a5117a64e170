"""``MLRetEmbeddings``: LangChain embeddings whose query and document paths stay separate."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from mlret_rag.encoder import MultilingualEncoder


class MLRetEmbeddings(BaseModel, Embeddings):
    """Cross-lingual embeddings from :class:`mlret_rag.MultilingualEncoder`.

    ``embed_query`` goes to ``encode_queries`` and ``embed_documents`` to ``encode_documents``, so each
    side gets the model's own prompt. Vectors are L2-normalised (dot product = cosine similarity).

    Args:
        model: ``None`` for the bundled offline model, a model name, or a local model folder.
        encoder: a ready ``MultilingualEncoder`` to share (then ``model``/``encoder_kwargs`` must be unset).
        encoder_kwargs: extra keyword arguments for ``MultilingualEncoder`` (e.g. ``device``, ``backend``).

    Example:
        .. code-block:: python

            from langchain_mlret import MLRetEmbeddings

            embeddings = MLRetEmbeddings()
            vector = embeddings.embed_query("¿Dónde está mi pedido?")
    """

    model: str | None = Field(default=None, description="Model name or folder; None = bundled model.")
    encoder_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra MultilingualEncoder kwargs.")
    _encoder: MultilingualEncoder = PrivateAttr()

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def __init__(self, model: str | None = None, *, encoder: MultilingualEncoder | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model=None if model is None else str(model), **kwargs)
        if encoder is not None:
            if not isinstance(encoder, MultilingualEncoder):
                raise TypeError(f"encoder must be a MultilingualEncoder, got {type(encoder).__name__}")
            if model is not None or self.encoder_kwargs:
                raise ValueError("give either encoder= or model=/encoder_kwargs=, not both")
        else:
            encoder = MultilingualEncoder(self.model, **self.encoder_kwargs)
        self._encoder = encoder

    @property
    def encoder(self) -> MultilingualEncoder:
        """The underlying core encoder."""
        return self._encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed knowledge-base texts (document prompt)."""
        return self._encoder.encode_documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a question (query prompt)."""
        return self._encoder.encode_queries([text])[0].tolist()
