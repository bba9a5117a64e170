"""Importing the adapter loads neither chromadb nor sentence-transformers nor torch."""

import subprocess
import sys


def test_import_loads_no_model_library() -> None:
    code = ("import sys, llama_index.retrievers.mlret; "
            "print(sorted(m for m in ('chromadb', 'sentence_transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
