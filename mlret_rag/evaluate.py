"""Retrieval evaluation: MRR, hit@k and nDCG@10, overall and per language, plus reports and a chart.

Retrieval is exact and in memory (dot products of the encoder's L2-normalised vectors), so results do
not depend on an index. A KB record is relevant to a query when it is listed in the query's
``relevant_ids``, otherwise when it carries the query's ``label`` (query-to-query retrieval over an intent
KB). Metrics (binary relevance):

* MRR: 1 / rank of the first relevant record within the top 100, 0 when there is none;
* hit@k: 1 when at least one relevant record is in the top k (the seed paper's Recall@k);
* nDCG@10: DCG with gains 1/log2(rank+1) over the top 10, divided by the ideal DCG.

They are computed here with numpy rather than ranx: ranx gives the same numbers (a test checks it) but
its numba compilation costs about a minute on a cold cache, longer than a small evaluation itself.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._callable import make_callable
from .errors import KnowledgeBaseError
from .kb import KBRecord, QueryRecord, as_kb_records, as_query_records

logger = logging.getLogger(__name__)

MRR_CUTOFF = 100
NDCG_K = 10
UNKNOWN_LANGUAGE = "unknown"
_QUERY_BLOCK = 256


def evaluate(
    model_or_encoder: Any,
    kb: Sequence[KBRecord] | str | os.PathLike[str],
    queries: Sequence[QueryRecord] | str | os.PathLike[str],
    *,
    k_values: Sequence[int] = (1, 3, 10),
    batch_size: int = 64,
    show_progress_bar: bool = False,
    name: str | None = None,
) -> dict[str, Any]:
    """Retrieve every query against the KB and score the rankings.

    Args:
        model_or_encoder: a :class:`~mlret_rag.MultilingualEncoder`, or what it accepts as ``model``
            (``None`` for the bundled model, a name, or a folder).
        kb: KB records, or a file :func:`~mlret_rag.kb.load_kb` reads.
        queries: query records (with ``label`` or ``relevant_ids``), or a file
            :func:`~mlret_rag.kb.load_queries` reads.
        k_values: cut-offs reported as ``hit@k``.
        batch_size: texts per forward pass when a model has to be loaded here.
        show_progress_bar: show encoding progress.
        name: the report's ``"model"`` (default: the encoder's model name).

    Returns:
        ``{"model": str, "overall": {...}, "per_language": {lang: {...}}}``, each metrics dict holding
        ``mrr``, ``hit@k`` per ``k_values``, ``ndcg@10`` and ``n_queries``. Queries without a language
        are grouped under ``"unknown"``.

    Raises:
        KnowledgeBaseError: a query with neither label nor relevant_ids, or labelled queries against a
            KB without labels.
    """
    from .encoder import MultilingualEncoder

    ks = _check_k_values(k_values)
    kb_records = as_kb_records(kb)
    query_records = as_query_records(queries)
    if not kb_records:
        raise KnowledgeBaseError("evaluate: the knowledge base is empty")
    if not query_records:
        raise KnowledgeBaseError("evaluate: there are no queries")
    relevance = relevance_matrix(kb_records, query_records)

    if isinstance(model_or_encoder, MultilingualEncoder):
        encoder = model_or_encoder
    else:
        encoder = MultilingualEncoder(model_or_encoder, batch_size=batch_size,
                                      show_progress_bar=show_progress_bar)
    previous = encoder.show_progress_bar
    encoder.show_progress_bar = show_progress_bar
    try:
        doc_vectors = encoder.encode_documents([r.text for r in kb_records])
        query_vectors = encoder.encode_queries([q.text for q in query_records])
    finally:
        encoder.show_progress_bar = previous

    ranking = rank(query_vectors, doc_vectors, depth=max(MRR_CUTOFF, *ks))
    per_query = score_rankings(ranking, relevance, ks)
    langs = [q.lang or UNKNOWN_LANGUAGE for q in query_records]
    return {
        "model": name or encoder.model_name,
        "overall": _aggregate(per_query, np.ones(len(langs), dtype=bool)),
        "per_language": {
            lang: _aggregate(per_query, np.array([x == lang for x in langs]))
            for lang in sorted(set(langs))
        },
    }


# -------------------------------------------------------------------------------------------------
def relevance_matrix(kb: Sequence[KBRecord], queries: Sequence[QueryRecord]) -> np.ndarray:
    """Boolean (n_queries, n_kb) matrix: ``relevant_ids`` when given, else same label.

    Queries with no relevant record in the KB stay in (they score 0) and trigger one warning.
    """
    ids = {r.id: j for j, r in enumerate(kb)}
    labels = np.array([r.label if r.label is not None else "\0none" for r in kb], dtype=object)
    kb_has_labels = any(r.label is not None for r in kb)
    rel = np.zeros((len(queries), len(kb)), dtype=bool)
    empty: list[int] = []
    for i, q in enumerate(queries):
        if q.relevant_ids is not None:
            cols = [ids[x] for x in q.relevant_ids if x in ids]
            rel[i, cols] = True
        elif q.label is not None:
            if not kb_has_labels:
                raise KnowledgeBaseError(
                    f"query {i + 1} ({q.text[:40]!r}) has a label but no KB record does; "
                    "label the KB or give the queries relevant_ids"
                )
            rel[i] = labels == q.label
        else:
            raise KnowledgeBaseError(
                f"query {i + 1} ({q.text[:40]!r}) has neither \"label\" nor \"relevant_ids\"; "
                "evaluation needs one of them"
            )
        if not rel[i].any():
            empty.append(i)
    if empty:
        q = queries[empty[0]]
        what = f"label {q.label!r}" if q.relevant_ids is None else f"relevant_ids {list(q.relevant_ids)}"
        warnings.warn(
            f"{len(empty)} of {len(queries)} queries have no relevant record in the KB and score 0 "
            f"(first: query {empty[0] + 1}, {what})", stacklevel=2,
        )
    return rel


def rank(query_vectors: np.ndarray, doc_vectors: np.ndarray, depth: int = MRR_CUTOFF) -> np.ndarray:
    """Indices of the ``depth`` best documents per query by dot product, best first (ties: lower index)."""
    n_docs = doc_vectors.shape[0]
    depth = min(depth, n_docs)
    out = np.empty((query_vectors.shape[0], depth), dtype=np.int64)
    for start in range(0, query_vectors.shape[0], _QUERY_BLOCK):
        scores = query_vectors[start:start + _QUERY_BLOCK] @ doc_vectors.T
        if depth < n_docs:
            top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        else:
            top = np.broadcast_to(np.arange(n_docs), scores.shape)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # by score, then by KB position
        out[start:start + _QUERY_BLOCK] = np.take_along_axis(top, order, axis=1)
    return out


def score_rankings(ranking: np.ndarray, relevance: np.ndarray, k_values: Sequence[int] = (1, 3, 10)) -> dict[str, np.ndarray]:
    """Per-query metrics for rankings (row i ranks KB columns for query i) under a boolean relevance."""
    hits = np.take_along_axis(relevance, ranking, axis=1)  # (n_q, depth) relevant at rank r+1
    depth = hits.shape[1]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)
    within = first < min(MRR_CUTOFF, depth)
    out: dict[str, np.ndarray] = {"mrr": np.where(within, 1.0 / (first + 1), 0.0)}
    for k in k_values:
        out[f"hit@{k}"] = hits[:, :k].any(axis=1).astype(float)
    discounts = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    dcg = (hits[:, :NDCG_K] * discounts[: min(NDCG_K, depth)]).sum(axis=1)
    n_rel = np.minimum(relevance.sum(axis=1), NDCG_K)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[n_rel]
    out[f"ndcg@{NDCG_K}"] = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    return out


def _aggregate(per_query: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    result: dict[str, Any] = {key: round(float(values[mask].mean()), 6) for key, values in per_query.items()}
    result["n_queries"] = int(mask.sum())
    return result


def _check_k_values(k_values: Sequence[int]) -> list[int]:
    ks = list(k_values)
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"k_values must be positive integers, got {k_values!r}")
    return sorted(set(ks))


# -------------------------------------------------------------------------------------------------

def format_report(report: Mapping[str, Any]) -> str:
    """A markdown table of one report: a row per language (overall first), a column per metric."""
    metrics = [k for k in report["overall"] if k != "n_queries"]
    head = "| language | n | " + " | ".join(metrics) + " |"
    rule = "|---|---:|" + "---:|" * len(metrics)
    rows = [("**overall**", report["overall"])] + list(report["per_language"].items())
    body = [f"| {lang} | {m['n_queries']} | " + " | ".join(f"{m[k]:.4f}" for k in metrics) + " |"
            for lang, m in rows]
    return "\n".join([f"Model: {report['model']}", "", head, rule, *body])


def report_markdown(
    reports: Mapping[str, Mapping[str, Any]], metric: str = "mrr", languages: Sequence[str] | None = None,
) -> str:
    """Compare models: an overall table (every metric), then ``metric`` per language (rows) and model (columns).

    ``languages`` picks and orders the rows (default: every language, sorted).
    """
    names = list(reports)
    if not names:
        raise ValueError("report_markdown needs at least one report")
    metrics = [k for k in next(iter(reports.values()))["overall"] if k != "n_queries"]
    if metric not in metrics:
        raise ValueError(f"metric must be one of {metrics}, got {metric!r}")
    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{reports[n]['overall'][k]:.4f}" for k in metrics) + " |")
    langs = _languages(reports, languages) or sorted({lang for r in reports.values() for lang in r["per_language"]})
    lines += ["", f"{metric} per language:", "", "| language | n | " + " | ".join(names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for lang in langs:
        cells = []
        for n in names:
            m = reports[n]["per_language"].get(lang)
            cells.append(f"{m[metric]:.4f}" if m else "–")
        count = next(r["per_language"][lang]["n_queries"] for r in reports.values() if lang in r["per_language"])
        lines.append(f"| {lang} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_per_language(
    reports: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str], metric: str = "mrr",
    languages: Sequence[str] | None = None, title: str | None = None,
) -> Path:
    """Save a PNG bar chart of ``metric`` per language, one bar per model.

    ``languages`` picks and orders the bars (default: every language, best first under the first model).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reports)
    if not names:
        raise ValueError("plot_per_language needs at least one report")
    first = reports[names[0]]["per_language"]
    langs = _languages(reports, languages) or sorted(
        {lang for r in reports.values() for lang in r["per_language"]},
        key=lambda lang: (-first.get(lang, {}).get(metric, -1.0), lang),
    )
    width = 0.8 / len(names)
    x = np.arange(len(langs))
    fig, ax = plt.subplots(figsize=(min(30.0, max(6.0, 2 + len(langs) * (0.18 + 0.08 * len(names)))), 4.5))
    for i, n in enumerate(names):
        values = [reports[n]["per_language"].get(lang, {}).get(metric, np.nan) for lang in langs]
        overall = reports[n]["overall"][metric]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=f"{n} (overall {overall:.3f})")
    ax.set_xticks(x, langs, rotation=90 if len(langs) > 12 else 0)
    label = metric.upper() if metric == "mrr" else metric
    ax.set_ylabel(label)
    ax.set_ylim(0, 1)
    ax.set_title(title or f"{label} per query language")
    ax.legend(fontsize="small", loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _languages(reports: Mapping[str, Mapping[str, Any]], languages: Sequence[str] | None) -> list[str]:
    if languages is None:
        return []
    known = {lang for r in reports.values() for lang in r["per_language"]}
    missing = [lang for lang in languages if lang not in known]
    if missing:
        raise ValueError(f"languages: {missing} appear in no report (reports have {sorted(known)})")
    return list(languages)


make_callable(__name__)  # `from mlret_rag import evaluate` is this function even after the module was imported
