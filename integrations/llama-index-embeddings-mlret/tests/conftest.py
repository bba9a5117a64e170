"""Offline environment and one shared bundled encoder (shared with the other mlret-rag packages through
:mod:`mlret_rag.testing`)."""

from __future__ import annotations

from mlret_rag.testing import offline_environment

offline_environment()

from mlret_rag.testing import encoder  # noqa: F401 (fixture)
