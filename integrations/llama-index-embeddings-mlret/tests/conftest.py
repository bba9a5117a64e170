"""Offline environment and one shared bundled encoder for this package's tests."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def encoder():
    """The bundled encoder, loaded once for the whole session."""
    from mlret_rag.encoder import MultilingualEncoder

    return MultilingualEncoder()
