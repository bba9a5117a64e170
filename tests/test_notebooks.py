"""The example notebooks run top to bottom offline on the bundled model, and are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Seconds per notebook (whole run); cells share it through nbclient's per-cell timeout.
BUDGET = {
    "llamaindex_quickstart.ipynb": 240,
    "langchain_quickstart.ipynb": 240,
    "multilingual_chatbot.ipynb": 240,
    "finetune_weighted.ipynb": 480,
}
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def test_every_notebook_has_a_budget():
    assert NOTEBOOKS and set(NOTEBOOKS) == set(BUDGET), "add new notebooks to BUDGET"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} have outputs; strip them (e.g. nbstripout) before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    budget = BUDGET[name]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel inherits os.environ, including MLRET_HOME set by conftest (one converted model).
    assert os.environ.get("MLRET_HOME")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = NotebookClient(nb, timeout=budget, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
