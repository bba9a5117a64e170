"""The public names of langchain_mlret are exactly these."""

from langchain_mlret import __all__

EXPECTED_ALL = ["MLRetEmbeddings", "MLRetRetriever"]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)


def test_import_loads_no_model_library() -> None:
    """Adapters stay thin: importing them pulls in neither chromadb nor sentence-transformers nor torch."""
    import subprocess
    import sys

    code = ("import sys, langchain_mlret; "
            "print(sorted(m for m in ('chromadb', 'sentence_transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
