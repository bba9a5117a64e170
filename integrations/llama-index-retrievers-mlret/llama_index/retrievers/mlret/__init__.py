"""LlamaIndex retriever over an mlret-rag Chroma knowledge base."""

from llama_index.retrievers.mlret.base import MLRetRetriever
from llama_index.retrievers.mlret.filters import to_chroma_where

__all__ = ["MLRetRetriever", "to_chroma_where"]
