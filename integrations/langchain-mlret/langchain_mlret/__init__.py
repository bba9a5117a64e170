"""LangChain integration for mlret-rag: cross-lingual embeddings and retriever."""

from langchain_mlret.embeddings import MLRetEmbeddings
from langchain_mlret.retrievers import MLRetRetriever

__all__ = ["MLRetEmbeddings", "MLRetRetriever"]
