"""``mlret demo``: index the bundled English support FAQ and answer questions asked in other languages.

The knowledge base (``data/demo_kb.jsonl``: 72 entries over 12 labels of an online shop's customer
support) and the questions (``data/demo_questions.jsonl``: German, Spanish, French, Chinese, Arabic,
Swahili and code-switched Hinglish) were written for this package. Everything runs offline.

:func:`run_finetune_demo` then fine-tunes the model briefly on the KB with labelled training questions
(``data/demo_train_questions.jsonl``: 60 questions in the same languages, none of them a demo question)
and compares base and tuned retrieval on the held-out demo questions.
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


def demo_train_questions_path() -> Path:
    """Path of the labelled multilingual training questions for the fine-tune demo (disjoint from the demo questions)."""
    return Path(str(resources.files("mlret_rag") / "data" / "demo_train_questions.jsonl"))


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


@dataclass(frozen=True)
class FinetuneDemoResult:
    """Base vs tuned figures on the held-out demo questions, and where the tuned model went."""

    rows: list[dict[str, Any]]
    reports: dict[str, dict[str, Any]]
    model_dir: Path | None
    seconds: float


def run_finetune_demo(
    *,
    model: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    epochs: int = 6,
    max_steps: int | None = None,
    learning_rate: float = 5e-5,
    negatives: str = "weighted",
    seed: int = 0,
    print_table: bool = True,
    show_progress_bar: bool = False,
) -> FinetuneDemoResult:
    """Fine-tune ``model`` on the demo KB with the demo training questions; compare base and tuned.

    Takes about a minute on a laptop CPU with the defaults (60 anchors, batch 16, 6 epochs).

    Args:
        model: starting model (``None``: the bundled one).
        out: keep the tuned model in this folder (overwritten); a temporary folder if ``None``.
        epochs, max_steps, learning_rate, negatives, seed: passed to :func:`mlret_rag.finetune.finetune`.
        print_table: print the base/tuned table with ``rich``.
        show_progress_bar: show training progress.

    Returns:
        rows ``{"model": "base" | "tuned", "hit@1", "mrr", "mrr_<lang>"...}``, the full reports,
        the model folder (``None`` when temporary) and the seconds taken.
    """
    import time

    from .finetune import finetune

    started = time.perf_counter()
    questions = load_demo_questions()
    with tempfile.TemporaryDirectory(prefix="mlret-demo-ft-", ignore_cleanup_errors=True) as tmp:
        result = finetune(
            load_demo_kb(), load_queries(demo_train_questions_path()), out=out or Path(tmp) / "tuned",
            model=model, negatives=negatives, epochs=epochs, max_steps=max_steps, batch_size=16,
            learning_rate=learning_rate, seed=seed, overwrite=out is not None, eval_queries=questions,
            show_progress_bar=show_progress_bar,
        )
    reports = dict(result.evaluation or {})
    langs = list(dict.fromkeys(q.lang or "unknown" for q in questions))
    rows = [
        {"model": name, "hit@1": rep["overall"]["hit@1"], "mrr": rep["overall"]["mrr"]}
        | {f"mrr_{lang}": rep["per_language"][lang]["mrr"] for lang in langs}
        for name, rep in reports.items()
    ]
    done = FinetuneDemoResult(rows=rows, reports=reports, model_dir=None if out is None else result.out,
                              seconds=time.perf_counter() - started)
    if print_table:
        print_finetune_table(done, langs, n_train=result.stats.get("examples", 0))
    return done


def print_finetune_table(result: FinetuneDemoResult, langs: list[str], *, n_train: int = 0,
                         console: Any = None) -> None:
    """Print base and tuned rows: hit@1 and MRR overall, then MRR per question language."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"fine-tune demo: {n_train} training questions; MRR on the held-out demo questions")
    for col in ["model", "hit@1", "MRR", *langs]:
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True, min_width=len(col))
    for row in result.rows:
        table.add_row(row["model"], f"{row['hit@1']:.2f}", f"{row['mrr']:.3f}",
                      *(f"{row[f'mrr_{lang}']:.2f}" for lang in langs))
    console.print(table)
    where = f"; tuned model in {result.model_dir}" if result.model_dir else ""
    console.print(f"fine-tune and evaluation took {result.seconds:.0f} s{where}.")
