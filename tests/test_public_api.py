"""The public API is small, pinned, and importing it is cheap (no model, no torch, no chromadb)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mlret_rag

EXPECTED = {
    "AddResult", "BACKENDS", "ChromaStore", "EncoderMismatchError", "FinetuneConfig", "FinetuneResult", "Hit", "KBRecord",
    "KnowledgeBaseError", "MlretError", "MultilingualEncoder", "MultilingualRetriever", "QueryRecord",
    "StoreConnectionError", "StoreLocation", "evaluate", "finetune", "load_documents", "load_kb", "load_queries",
    "plot_per_language", "report_markdown", "sync_documents", "__version__",
    # every exception, from mlret_rag.errors
    "StoreBusyError", "StoreTimeoutError", "DiskFullError", "DocumentError", "TrainingMemoryError",
    "OutputExistsError", "BundledModelError", "MissingCollectionError", "OnnxBackendError", "StoreClosedError",
}


def test_all_is_pinned():
    assert set(mlret_rag.__all__) == EXPECTED


def test_every_exception_lives_in_errors_and_is_exported():
    import inspect

    from mlret_rag import errors

    defined = {n for n, v in vars(errors).items() if inspect.isclass(v) and issubclass(v, Exception)}
    assert defined <= set(mlret_rag.__all__)
    assert all(getattr(mlret_rag, n).__module__ == "mlret_rag.errors" for n in defined)
    import ast
    from pathlib import Path

    package = Path(mlret_rag.__file__).parent
    elsewhere = [f"{path.relative_to(package)}:{node.lineno} {node.name}" for path in package.rglob("*.py")
                 if path.name != "errors.py" for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and not node.name.startswith("_")]
    assert elsewhere == []


def test_every_public_name_resolves():
    for name in mlret_rag.__all__:
        assert getattr(mlret_rag, name) is not None


def test_import_and_help_load_nothing_heavy():
    code = (
        "import sys, mlret_rag, mlret_rag.cli\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'chromadb', 'transformers', 'onnxruntime')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    help_text = subprocess.run(
        [sys.executable, "-m", "mlret_rag.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert help_text.returncode == 0
    for command in ("index", "query", "finetune", "eval", "demo"):
        assert command in help_text.stdout


def test_evaluate_and_finetune_stay_functions_after_their_modules_are_imported():
    import importlib

    importlib.import_module("mlret_rag.evaluate")  # importing a module sets the package attribute to it
    importlib.import_module("mlret_rag.finetune.train")
    from mlret_rag import evaluate, finetune
    from mlret_rag.errors import KnowledgeBaseError

    with pytest.raises(KnowledgeBaseError, match="empty"):
        evaluate(None, [], [])  # the call reaches the function, before any model loads
    with pytest.raises(ValueError, match="negatives must be one of"):
        finetune([], out="unused", negatives="random")
    from mlret_rag.evaluate import format_report  # and the module's other names are still there

    assert callable(format_report)
