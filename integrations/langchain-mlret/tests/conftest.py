"""Offline environment, one shared bundled encoder, and a small real Chroma knowledge base (shared with
the other mlret-rag packages through :mod:`mlret_rag.testing`)."""

from __future__ import annotations

from mlret_rag.testing import offline_environment

offline_environment()

from mlret_rag.testing import core_retriever, docs_retriever, encoder, kb_rows  # noqa: F401 (fixtures)
