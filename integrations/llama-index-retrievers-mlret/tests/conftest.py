"""Offline environment, one shared bundled encoder, a small real Chroma knowledge base and questions in
six languages (shared with the other mlret-rag packages through :mod:`mlret_rag.testing`)."""

from __future__ import annotations

from mlret_rag.testing import offline_environment

offline_environment()

from mlret_rag.testing import core_retriever, docs_retriever, encoder, kb_rows, questions  # noqa: F401 (fixtures)
