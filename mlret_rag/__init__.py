"""mlret-rag: cross-lingual retrieval for RAG over a knowledge base written in one language."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names resolve lazily so that `import mlret_rag` loads no model and no heavy library.
_EXPORTS = {
    "MultilingualEncoder": "mlret_rag.encoder",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:
    from .encoder import MultilingualEncoder


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlret_rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
