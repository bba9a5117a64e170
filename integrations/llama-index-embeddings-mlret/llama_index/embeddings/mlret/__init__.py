"""LlamaIndex embeddings backed by mlret-rag's MultilingualEncoder."""

from llama_index.embeddings.mlret.base import MLRetEmbedding

__all__ = ["MLRetEmbedding"]
