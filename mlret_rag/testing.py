"""Shared pytest scaffolding for mlret-rag and its framework packages: an offline environment, one
bundled encoder per session, and a small real knowledge base in an embedded Chroma database.

Only test suites import this module (it imports pytest). A ``conftest.py`` uses it like this::

    from mlret_rag.testing import offline_environment

    offline_environment()
    from mlret_rag.testing import core_retriever, docs_retriever, encoder, kb_rows, questions  # noqa: F401

Importing the fixture functions into the conftest registers them there; ``pytest_plugins`` would
not work in the integrations' conftests, which are not at the root when the whole tree runs at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# A support-centre knowledge base over three labels and departments, six English records.
KB: list[dict[str, Any]] = [
    {"id": "order-1", "text": "Track your order from 'My orders' in your account.", "label": "track_order",
     "metadata": {"dept": "shipping"}},
    {"id": "order-2", "text": "Parcels are delivered within 3 to 5 working days.", "label": "track_order",
     "metadata": {"dept": "shipping"}},
    {"id": "refund-1", "text": "Refunds are paid back to your card within 14 days.", "label": "refund",
     "metadata": {"dept": "billing"}},
    {"id": "refund-2", "text": "To return an item, print the free return label.", "label": "refund",
     "metadata": {"dept": "billing"}},
    {"id": "password-1", "text": "Reset your password with the 'Forgot password' link on the login page.",
     "label": "password_reset", "metadata": {"dept": "account"}},
    {"id": "password-2", "text": "Password reset emails can take ten minutes to arrive.",
     "label": "password_reset", "metadata": {"dept": "account"}},
]
# Metadata every chunk of a document carries, in the core and through both adapters.
SOURCE_FIELDS = {"source", "doc_id", "title", "headings", "chunk", "start", "end"}
# Questions in six languages with the KB ids that answer them.
QUESTIONS: list[tuple[str, list[str]]] = [
    ("¿Cuándo recibo el reembolso?", ["refund-1"]),
    ("Wie setze ich mein Passwort zurück?", ["password-1", "password-2"]),
    ("Où est ma commande ?", ["order-1"]),
    ("Como devolvo um produto?", ["refund-2"]),
    ("Как вернуть товар?", ["refund-2"]),
    ("荷物はいつ届きますか？", ["order-2"]),
]


def offline_environment() -> None:
    """No network (hub offline, no Chroma telemetry), quiet tokenizers; inside an mlret-rag checkout,
    the checkout's converted-model cache (``.mlret-cache``) unless ``MLRET_HOME`` is set already."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["ANONYMIZED_TELEMETRY"] = "False"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "integrations").is_dir() and (checkout / "pyproject.toml").is_file():
        os.environ.setdefault("MLRET_HOME", str(checkout / ".mlret-cache"))


@pytest.fixture(scope="session")
def encoder():
    """The bundled encoder, loaded once for the whole session."""
    from mlret_rag import MultilingualEncoder

    return MultilingualEncoder()


@pytest.fixture(scope="session")
def kb_rows() -> list[dict[str, Any]]:
    """The test knowledge base as plain dicts."""
    return KB


@pytest.fixture(scope="session")
def questions() -> list[tuple[str, list[str]]]:
    """Questions in six languages with their relevant KB ids."""
    return QUESTIONS


@pytest.fixture(scope="session")
def core_retriever(encoder, tmp_path_factory):
    """A core ``MultilingualRetriever`` over :data:`KB` in an embedded Chroma database."""
    from mlret_rag import ChromaStore, MultilingualRetriever

    store = ChromaStore(encoder, path=tmp_path_factory.mktemp("kb-chroma"), collection="kb-test",
                        show_progress_bar=False)
    store.add(KB)
    return MultilingualRetriever(store)


@pytest.fixture(scope="module")
def docs_retriever(encoder, tmp_path_factory):
    """A core ``MultilingualRetriever`` over three small documents (Markdown and HTML) synced in
    32-token chunks, so one document gives several chunks."""
    from mlret_rag import ChromaStore, MultilingualRetriever, sync_documents

    root = tmp_path_factory.mktemp("docs")
    (root / "returns.md").write_text("# Returns\n\n" + "\n\n".join(
        f"## Rule {i}\n\nItem group {i} can be returned within {10 + i} days if unused." for i in range(4)),
        encoding="utf-8")
    (root / "shipping.md").write_text("# Shipping\n\nParcels arrive in three to five working days.\n",
                                      encoding="utf-8")
    (root / "account.html").write_text("<h1>Account</h1><p>Reset your password with the link.</p>",
                                       encoding="utf-8")
    store = ChromaStore(encoder, path=tmp_path_factory.mktemp("docs-db"), collection="docs",
                        show_progress_bar=False)
    sync_documents(store, root, chunk_tokens=32)
    yield MultilingualRetriever(store)
    store.close()
