"""Shared fixtures: an offline environment, one cache for the converted model, encoders loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlret_rag.testing import offline_environment

REPO = Path(__file__).resolve().parents[1]

# One converted model per checkout, reused across test runs (conversion tests use their own folders).
os.environ.setdefault("MLRET_HOME", str(REPO / ".mlret-cache"))
offline_environment()  # the same environment as the integrations' tests (mlret_rag.testing)

from mlret_rag.testing import encoder  # noqa: F401 (the bundled encoder, one per session)


@pytest.fixture(scope="session")
def torch_encoder():
    """The bundled encoder on PyTorch."""
    from mlret_rag import MultilingualEncoder

    return MultilingualEncoder(backend="torch")


@pytest.fixture(scope="session")
def onnx_encoder():
    """The bundled encoder on ONNX Runtime fp32."""
    from mlret_rag import MultilingualEncoder

    return MultilingualEncoder(backend="onnx")


@pytest.fixture(scope="session")
def int8_encoder():
    """The bundled encoder on ONNX Runtime int8."""
    from mlret_rag import MultilingualEncoder

    return MultilingualEncoder(backend="onnx-int8")
