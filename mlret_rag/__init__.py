"""mlret-rag: cross-lingual retrieval for RAG over a knowledge base written in one language."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names resolve lazily so that `import mlret_rag` loads no model and no heavy library.
_EXPORTS = {
    "MultilingualEncoder": "mlret_rag.encoder",
    "BACKENDS": "mlret_rag.encoder",
    "KBRecord": "mlret_rag.kb",
    "QueryRecord": "mlret_rag.kb",
    "load_kb": "mlret_rag.kb",
    "load_queries": "mlret_rag.kb",
    "load_documents": "mlret_rag.documents",
    "sync_documents": "mlret_rag.documents",
    "ChromaStore": "mlret_rag.store",
    "Hit": "mlret_rag.store",
    "AddResult": "mlret_rag.store",
    "StoreLocation": "mlret_rag.location",
    "MultilingualRetriever": "mlret_rag.retriever",
    "finetune": "mlret_rag.finetune",
    "FinetuneResult": "mlret_rag.finetune",
    "FinetuneConfig": "mlret_rag.finetune",
    "evaluate": "mlret_rag.evaluate",
    "report_markdown": "mlret_rag.evaluate",
    "plot_per_language": "mlret_rag.evaluate",
    # every exception lives in mlret_rag.errors
    **{name: "mlret_rag.errors" for name in (
        "MlretError",
        "KnowledgeBaseError",
        "EncoderMismatchError",
        "StoreConnectionError",
        "StoreBusyError",
        "StoreTimeoutError",
        "DiskFullError",
        "DocumentError",
        "TrainingMemoryError",
        "OutputExistsError",
        "BundledModelError",
        "MissingCollectionError",
        "OnnxBackendError",
        "StoreClosedError",
    )},
}

__all__ = [
    "BACKENDS",
    "AddResult",
    "BundledModelError",
    "ChromaStore",
    "DiskFullError",
    "DocumentError",
    "EncoderMismatchError",
    "FinetuneConfig",
    "FinetuneResult",
    "Hit",
    "KBRecord",
    "KnowledgeBaseError",
    "MissingCollectionError",
    "MlretError",
    "MultilingualEncoder",
    "MultilingualRetriever",
    "OnnxBackendError",
    "OutputExistsError",
    "QueryRecord",
    "StoreBusyError",
    "StoreClosedError",
    "StoreConnectionError",
    "StoreLocation",
    "StoreTimeoutError",
    "TrainingMemoryError",
    "__version__",
    "evaluate",
    "finetune",
    "load_documents",
    "load_kb",
    "load_queries",
    "plot_per_language",
    "report_markdown",
    "sync_documents",
]

if TYPE_CHECKING:
    from .documents import load_documents, sync_documents
    from .encoder import BACKENDS, MultilingualEncoder
    from .errors import (
        BundledModelError,
        DiskFullError,
        DocumentError,
        EncoderMismatchError,
        KnowledgeBaseError,
        MissingCollectionError,
        MlretError,
        OnnxBackendError,
        OutputExistsError,
        StoreBusyError,
        StoreClosedError,
        StoreConnectionError,
        StoreTimeoutError,
        TrainingMemoryError,
    )
    from .evaluate import evaluate, plot_per_language, report_markdown
    from .finetune import FinetuneConfig, FinetuneResult, finetune
    from .kb import KBRecord, QueryRecord, load_kb, load_queries
    from .location import StoreLocation
    from .retriever import MultilingualRetriever
    from .store import AddResult, ChromaStore, Hit


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlret_rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
