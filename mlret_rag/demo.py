"""``mlret demo``: index the bundled English support FAQ and answer questions asked in other languages.

The knowledge base (``data/demo_kb.jsonl``: 72 entries over 12 labels of an online shop's customer
support) and the questions (``data/demo_questions.jsonl``: German, Spanish, French, Chinese, Arabic,
Swahili and code-switched Hinglish) were written for this package. Everything runs offline.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .kb import KBRecord, QueryRecord, load_kb, load_queries

DEMO_COLLECTION = "mlret-demo"


def demo_kb_path() -> Path:
    """Path of the bundled demo knowledge base (JSON Lines)."""
    return Path(str(resources.files("mlret_rag") / "data" / "demo_kb.jsonl"))


def demo_questions_path() -> Path:
    """Path of the bundled multilingual demo questions (JSON Lines, with expected labels)."""
    return Path(str(resources.files("mlret_rag") / "data" / "demo_questions.jsonl"))


def load_demo_kb() -> list[KBRecord]:
    """The demo knowledge base as records."""
    return load_kb(demo_kb_path())


def load_demo_questions() -> list[QueryRecord]:
    """The demo questions as records."""
    return load_queries(demo_questions_path())


@dataclass(frozen=True)
class DemoRow:
    """One answered demo question."""

    question: str
    lang: str | None
    expected: str | None
    best_id: str
    best_text: str
    label: str | None
    score: float

    @property
    def correct(self) -> bool:
        """The best entry carries the expected label."""
        return self.expected is not None and self.label == self.expected


def run_demo(
    *,
    model: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] | None = None,
    questions: list[QueryRecord] | None = None,
    show_progress_bar: bool = False,
    print_table: bool = True,
    backend: str | None = None,
) -> list[DemoRow]:
    """Index the demo KB with ``model`` (bundled by default) and answer the demo questions.

    Args:
        model: encoder model (name, folder, or ``None`` for the bundled one).
        db_path: embedded Chroma folder to index into; a temporary folder (removed afterwards) if ``None``.
        questions: questions to ask instead of the bundled ones.
        show_progress_bar: show the indexing progress bar.
        print_table: print the result table and a one-line summary with ``rich``.
        backend: inference engine (``None``: the encoder's default).

    Returns:
        one :class:`DemoRow` per question, in order.
    """
    from .encoder import MultilingualEncoder
    from .retriever import MultilingualRetriever
    from .store import ChromaStore

    questions = questions if questions is not None else load_demo_questions()
    encoder = MultilingualEncoder(model, backend=backend)
    with tempfile.TemporaryDirectory(prefix="mlret-demo-", ignore_cleanup_errors=True) as tmp:
        store = ChromaStore(
            encoder, path=db_path or tmp, collection=DEMO_COLLECTION, show_progress_bar=show_progress_bar
        )
        store.add(load_demo_kb())
        retriever = MultilingualRetriever(store)
        results = retriever.retrieve_batch([q.text for q in questions], k=1)
    rows = [
        DemoRow(
            question=q.text,
            lang=q.lang,
            expected=q.label,
            best_id=hits[0].id,
            best_text=hits[0].text,
            label=hits[0].label,
            score=hits[0].score,
        )
        for q, hits in zip(questions, results)
    ]
    if print_table:
        print_demo_table(rows, title=f"mlret demo: {encoder.model_name}")
    return rows


def print_demo_table(rows: list[DemoRow], *, title: str = "mlret demo", console: Any = None) -> None:
    """Print question, language, best entry, label and score as a table, then the share answered right."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title, show_lines=False)
    table.add_column("question", overflow="fold", max_width=40)
    table.add_column("lang")
    table.add_column("best entry", overflow="fold", max_width=48)
    table.add_column("label")
    table.add_column("score", justify="right")
    for row in rows:
        mark = (
            ""
            if row.expected is None
            else (" [green]✓[/]" if row.correct else f" [red]✗ ({row.expected})[/]")
        )
        entry = re.split(r"(?<=[.?!])\s", row.best_text, maxsplit=1)[0]  # the entry's first sentence
        table.add_row(row.question, row.lang or "", entry, f"{row.label}{mark}", f"{row.score:.3f}")
    console.print(table)
    judged = [r for r in rows if r.expected is not None]
    if judged:
        right = sum(r.correct for r in judged)
        console.print(
            f"{right}/{len(judged)} questions matched the expected label at rank 1 "
            "(score = cosine similarity, higher is better)."
        )
