"""Indexing throughput, store-only insert/search speed and end-to-end query latency.

* Indexing: ``ChromaStore.add`` (encode + insert) of >= 5,000 real utterances sampled at run time from
  the ``home-assistant-intents`` grammars (en, de, fr, es), records/s.
* Store only: insert throughput and single-query search latency (k=10) for 100,000 random unit vectors
  (seeded, 384 dims), no encoder involved.
* End to end: one question at a time (encode + search, k=5) on the indexed utterances, p50/p95, with the
  encode and search parts timed separately to say what dominates.

Each part runs on an embedded store and on a local ``chroma run`` server. Prints a table and saves
``results/retrieve_speed.json``.

    .venv/bin/python benchmarks/retrieve_speed.py [--vectors 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the test helper that starts a real Chroma server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("MLRET_HOME", str(REPO / ".mlret-cache"))

SEED = 0


class _VectorsOnly:
    """Stands in for an encoder where only vectors are stored: same dimension, fixed fingerprint."""

    model_name = "random-unit-vectors"
    fingerprint = "random-unit-vectors"
    model_path = None

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.prompts = {"query": "", "document": ""}


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": len(samples_s),
    }


def real_texts(n_min: int) -> tuple[list[str], list[str]]:
    """>= ``n_min`` KB utterances (en, de, fr, es) and held-out questions (it, pt, nl, pl, zh-CN)."""
    from mlret_rag.datasets.home_assistant import load_home_assistant_intents

    kb = [
        t
        for rows in load_home_assistant_intents(["en", "de", "fr", "es"], per_intent=60, seed=SEED).values()
        for t, _ in rows
    ]
    if len(kb) < n_min:
        raise SystemExit(f"only {len(kb)} utterances sampled, need {n_min}")
    questions = [
        t
        for rows in load_home_assistant_intents(
            ["it", "pt", "nl", "pl", "zh-CN"], per_intent=3, seed=SEED
        ).values()
        for t, _ in rows
    ]
    return kb, questions


def bench_indexing(encoder, where: dict, texts: list[str]):
    from mlret_rag.kb import load_kb
    from mlret_rag.store import ChromaStore

    store = ChromaStore(encoder, collection="bench-index", show_progress_bar=False, **where)
    records = load_kb([{"text": t} for t in dict.fromkeys(texts)])
    start = time.perf_counter()
    result = store.add(records)
    elapsed = time.perf_counter() - start
    assert result.encoded == len(records) == store.count()
    return store, {
        "records": len(records),
        "seconds": round(elapsed, 2),
        "records_per_s": round(len(records) / elapsed, 1),
        "batch_size": store.batch_size,
    }


def bench_store_only(where: dict, n: int, n_queries: int, dim: int = 384) -> tuple[object, dict]:
    from mlret_rag.store import ChromaStore

    rng = np.random.default_rng(SEED)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = ChromaStore(_VectorsOnly(dim), collection="bench-vectors", show_progress_bar=False,  # type: ignore[arg-type]
                        batch_size=5000, **where)
    col, batch = store.collection, store.batch_size  # batch_size is capped below the client's maximum
    start = time.perf_counter()
    for i in range(0, n, batch):
        col.add(
            ids=[f"v{j}" for j in range(i, min(i + batch, n))],
            embeddings=vectors[i : i + batch],
            metadatas=[{"label": str(j % 50)} for j in range(i, min(i + batch, n))],
        )
    insert_s = time.perf_counter() - start
    assert store.count() == n
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    store.query(queries[:5], k=10)  # warm-up (loads the index)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        store.query(q[None, :], k=10)
        times.append(time.perf_counter() - t0)
    return store, {
        "vectors": n,
        "insert_s": round(insert_s, 2),
        "insert_vectors_per_s": round(n / insert_s, 1),
        "search_k10": percentiles(times),
    }


def bench_end_to_end(store, questions: list[str], encoder=None) -> dict:
    """Single-question latency: encode with ``encoder`` (default: the store's), then search ``store``."""
    encoder = encoder or store.encoder
    for q in questions[:5]:
        store.query(encoder.encode_queries([q]), k=5)  # warm-up
    total, encode, search = [], [], []
    for q in questions:
        t0 = time.perf_counter()
        vec = encoder.encode_queries([q])
        t1 = time.perf_counter()
        store.query(vec, k=5)
        t2 = time.perf_counter()
        total.append(t2 - t0)
        encode.append(t1 - t0)
        search.append(t2 - t1)
    return {"total": percentiles(total), "encode": percentiles(encode), "search": percentiles(search)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "retrieve_speed.json")
    args = parser.parse_args()

    import torch
    from chroma_server import run_chroma_server

    from mlret_rag import BACKENDS, MultilingualEncoder

    torch.manual_seed(SEED)
    kb_texts, questions = real_texts(5000)
    questions = (questions * (1 + args.queries // max(1, len(questions))))[: args.queries]
    encoder = MultilingualEncoder(batch_size=64)  # the default backend
    backends = {b: encoder if b == encoder.backend else MultilingualEncoder(backend=b) for b in BACKENDS}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mlret-bench-") as tmp:
        root = Path(tmp)
        with run_chroma_server(root / "server") as (host, port):
            for name, where in (
                ("embedded", {"path": root / "embedded"}),
                ("server", {"host": host, "port": port}),
            ):
                print(f"[{name}] indexing {len(kb_texts)} utterances ...", flush=True)
                store, indexing = bench_indexing(encoder, where, kb_texts)
                print(f"[{name}] end-to-end queries ...", flush=True)
                e2e = bench_end_to_end(store, questions)
                print(f"[{name}] store only, {args.vectors} vectors ...", flush=True)
                vector_store, store_only = bench_store_only(where, args.vectors, args.queries)
                print(f"[{name}] end-to-end over {args.vectors} vectors per backend ...", flush=True)
                e2e_100k = {b: bench_end_to_end(vector_store, questions, enc) for b, enc in backends.items()}
                results[name] = {
                    "indexing": indexing, "end_to_end_k5": e2e, "store_only": store_only,
                    "end_to_end_100k_by_backend": e2e_100k,
                }

    import chromadb

    report = {
        "benchmark": "retrieve_speed",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "chromadb": chromadb.__version__,
            "torch": torch.__version__,
        },
        "note": (
            "2-core machine; figures are medians of single-question runs. The 100k-vector collection holds "
            "random unit vectors: search cost does not depend on what the vectors mean."
        ),
        "model": encoder.model_name,
        "indexing_backend": encoder.backend,
        "kb_source": "home-assistant-intents utterances (en, de, fr, es; per_intent=60, seed=0)",
        "questions_source": "home-assistant-intents utterances (it, pt, nl, pl, zh-CN; per_intent=3, seed=0)",
        "targets": {
            "end_to_end_p50_ms": 50, "store_only_search_p50_ms_at_100k": 5,
            "end_to_end_100k_p50_ms": {"onnx": 5, "onnx-int8": 4},
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"retrieve speed ({encoder.model_name}, {os.cpu_count()} CPUs, shared)")
    for col in ("metric", "embedded", "server"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    r = results
    rows = [
        (
            "indexing records/s (encode+insert)",
            lambda x: f"{x['indexing']['records_per_s']:.0f} ({x['indexing']['records']} rec)",
        ),
        ("store-only insert vectors/s", lambda x: f"{x['store_only']['insert_vectors_per_s']:.0f}"),
        (
            "store-only search p50 / p95 ms",
            lambda x: (
                f"{x['store_only']['search_k10']['p50_ms']:.2f} / {x['store_only']['search_k10']['p95_ms']:.2f}"
            ),
        ),
        (
            "end-to-end p50 / p95 ms",
            lambda x: (
                f"{x['end_to_end_k5']['total']['p50_ms']:.1f} / {x['end_to_end_k5']['total']['p95_ms']:.1f}"
            ),
        ),
        ("  encode part p50 ms", lambda x: f"{x['end_to_end_k5']['encode']['p50_ms']:.1f}"),
        ("  search part p50 ms", lambda x: f"{x['end_to_end_k5']['search']['p50_ms']:.2f}"),
    ]
    for backend in backends:
        rows.append((
            f"end-to-end over {args.vectors} p50 / p95 ms, {backend}",
            lambda x, b=backend: (
                f"{x['end_to_end_100k_by_backend'][b]['total']['p50_ms']:.1f} / "
                f"{x['end_to_end_100k_by_backend'][b]['total']['p95_ms']:.1f}"
            ),
        ))
    for label, fmt in rows:
        table.add_row(label, fmt(r["embedded"]), fmt(r["server"]))
    Console().print(table)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
