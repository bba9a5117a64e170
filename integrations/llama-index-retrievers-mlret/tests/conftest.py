"""Offline environment, one shared bundled encoder, and a small real Chroma knowledge base."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Inside the mlret-rag checkout, reuse its converted model cache; elsewhere the user's default.
_REPO = Path(__file__).resolve().parents[3]
if (_REPO / "mlret_rag").is_dir():
    os.environ.setdefault("MLRET_HOME", str(_REPO / ".mlret-cache"))

KB = [
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
# Questions in several languages with the KB ids that answer them.
QUESTIONS = [
    ("¿Cuándo recibo el reembolso?", ["refund-1"]),
    ("Wie setze ich mein Passwort zurück?", ["password-1", "password-2"]),
    ("Où est ma commande ?", ["order-1"]),
    ("Como devolvo um produto?", ["refund-2"]),
    ("Как вернуть товар?", ["refund-2"]),
    ("荷物はいつ届きますか？", ["order-2"]),
]


@pytest.fixture(scope="session")
def encoder():
    """The bundled encoder, loaded once for the whole session."""
    from mlret_rag.encoder import MultilingualEncoder

    return MultilingualEncoder()


@pytest.fixture(scope="session")
def kb_rows() -> list[dict]:
    """The test knowledge base as plain dicts."""
    return KB


@pytest.fixture(scope="session")
def questions() -> list[tuple[str, list[str]]]:
    """Questions in six languages with their relevant KB ids."""
    return QUESTIONS


@pytest.fixture(scope="session")
def core_retriever(encoder, tmp_path_factory):
    """A core MultilingualRetriever over ``KB`` in an embedded Chroma database."""
    from mlret_rag.retriever import MultilingualRetriever
    from mlret_rag.store import ChromaStore

    store = ChromaStore(encoder, path=tmp_path_factory.mktemp("li-chroma"), collection="li-test",
                        show_progress_bar=False)
    store.add(KB)
    return MultilingualRetriever(store)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """Mark unmarked ``async def`` tests (the standard suites' carry none) so they run in any asyncio_mode."""
    if name.startswith("test") and inspect.iscoroutinefunction(obj) and not any(
        m.name == "asyncio" for m in getattr(obj, "pytestmark", [])
    ):
        pytest.mark.asyncio(obj)
