"""Evaluation metrics on rankings whose answers are known by hand, relevance rules, reports and chart."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mlret_rag.errors import KnowledgeBaseError
from mlret_rag.evaluate import (
    evaluate,
    format_report,
    plot_per_language,
    rank,
    relevance_matrix,
    report_markdown,
    score_rankings,
)
from mlret_rag.kb import KBRecord, QueryRecord

KEYS = {"mrr", "hit@1", "hit@3", "hit@10", "ndcg@10", "n_queries"}


def _rel(n_docs: int, *sets: set[int]) -> np.ndarray:
    rel = np.zeros((len(sets), n_docs), dtype=bool)
    for i, s in enumerate(sets):
        rel[i, list(s)] = True
    return rel


def test_metrics_match_hand_computed_values_on_a_toy_ranking():
    docs = np.eye(5, dtype=np.float32)  # score of doc j for query q is q[j]
    queries = np.array([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [5, 4, 3, 2, 1]], dtype=np.float32)
    ranking = rank(queries, docs)
    assert ranking.tolist() == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    rel = _rel(5, {1, 3}, {4}, set(), {4})
    m = score_rankings(ranking, rel, (1, 3, 10))
    log2 = math.log2
    assert m["mrr"].tolist() == pytest.approx([0.5, 1.0, 0.0, 0.2])
    assert m["hit@1"].tolist() == [0, 1, 0, 0]
    assert m["hit@3"].tolist() == [1, 1, 0, 0]
    assert m["hit@10"].tolist() == [1, 1, 0, 1]
    expected_ndcg = [(1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3)), 1.0, 0.0, 1 / log2(6)]
    assert m["ndcg@10"].tolist() == pytest.approx(expected_ndcg)


def test_mrr_counts_only_the_top_100_and_ties_keep_kb_order():
    n = 150
    docs = np.eye(n, dtype=np.float32)
    query = np.linspace(1.0, 0.0, n, dtype=np.float32)[None, :]  # ranks docs 0, 1, 2, ...
    ranking = rank(query, docs, depth=100)
    assert ranking.shape == (1, 100) and ranking[0, :3].tolist() == [0, 1, 2]
    assert score_rankings(ranking, _rel(n, {119}), (1,))["mrr"].tolist() == [0.0]
    assert score_rankings(ranking, _rel(n, {99}), (1,))["mrr"].tolist() == pytest.approx([0.01])
    tied = rank(np.ones((1, 4), dtype=np.float32), np.eye(4, dtype=np.float32), depth=3)
    assert tied.tolist() == [[0, 1, 2]]


def test_metrics_agree_with_ranx_on_random_rankings():
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    rng = np.random.default_rng(0)
    scores = rng.random((25, 40)).astype(np.float32)
    rel = rng.random((25, 40)) < 0.08
    rel[np.arange(25), rng.integers(0, 40, 25)] = True
    ours = score_rankings(rank(scores, np.eye(40, dtype=np.float32)), rel, (1, 3, 10))
    qrels = Qrels({f"q{i}": {f"d{j}": 1 for j in np.flatnonzero(rel[i])} for i in range(25)})
    run = Run({f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(40)} for i in range(25)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ranx_evaluate(qrels, run, ["mrr@100", "hit_rate@1", "hit_rate@3", "hit_rate@10", "ndcg@10"])
    assert ours["mrr"].mean() == pytest.approx(theirs["mrr@100"])
    for k in (1, 3, 10):
        assert ours[f"hit@{k}"].mean() == pytest.approx(theirs[f"hit_rate@{k}"])
    assert ours["ndcg@10"].mean() == pytest.approx(theirs["ndcg@10"])


def test_relevance_by_label_or_by_relevant_ids():
    kb = [KBRecord("a", "x", label="L1"), KBRecord("b", "y", label="L2"), KBRecord("c", "z", label="L1")]
    queries = [QueryRecord("q", label="L1"), QueryRecord("q", label="L1", relevant_ids=("b",)),
               QueryRecord("q", relevant_ids=("c", "missing"))]
    assert relevance_matrix(kb, queries).tolist() == [[True, False, True], [False, True, False],
                                                      [False, False, True]]
    with pytest.warns(UserWarning, match="1 of 1 queries have no relevant record"):
        relevance_matrix(kb, [QueryRecord("q", label="L9")])
    with pytest.raises(KnowledgeBaseError, match="neither"):
        relevance_matrix(kb, [QueryRecord("q")])
    with pytest.raises(KnowledgeBaseError, match="no KB record does"):
        relevance_matrix([KBRecord("a", "x")], [QueryRecord("q", label="L1")])


KB = [
    KBRecord("w1", "What will the weather be like tomorrow?", label="weather", lang="en"),
    KBRecord("w2", "Is it going to rain today?", label="weather", lang="en"),
    KBRecord("r1", "How do I reset my password?", label="password", lang="en"),
    KBRecord("r2", "I forgot my login password", label="password", lang="en"),
    KBRecord("o1", "Where is my parcel?", label="order", lang="en"),
    KBRecord("o2", "Track my order status", label="order", lang="en"),
]


def test_evaluate_schema_and_per_language_grouping(encoder):
    queries = [
        QueryRecord("Wie wird das Wetter morgen?", label="weather", lang="de"),
        QueryRecord("Ich habe mein Passwort vergessen", label="password", lang="de"),
        QueryRecord("Où est mon colis ?", label="order", lang="fr"),
        QueryRecord("Track my order status", relevant_ids=("o2",)),
    ]
    report = evaluate(encoder, KB, queries, name="base")
    assert set(report) == {"model", "overall", "per_language"} and report["model"] == "base"
    assert set(report["overall"]) == KEYS
    assert set(report["per_language"]) == {"de", "fr", "unknown"}
    assert all(set(m) == KEYS for m in report["per_language"].values())
    assert [report["per_language"][x]["n_queries"] for x in ("de", "fr", "unknown")] == [2, 1, 1]
    assert report["overall"]["n_queries"] == 4
    assert report["per_language"]["unknown"]["mrr"] == 1.0  # the identical text ranks first
    weighted = sum(m["mrr"] * m["n_queries"] for m in report["per_language"].values()) / 4
    assert report["overall"]["mrr"] == pytest.approx(weighted, abs=1e-5)
    for m in report["per_language"].values():
        assert 0 <= m["mrr"] <= 1 and m["hit@1"] <= m["hit@3"] <= m["hit@10"]
    # a 6-record KB: every query has a relevant record within the top 10
    assert report["overall"]["hit@10"] == 1.0


def test_evaluate_reads_files_and_rejects_bad_k(encoder, tmp_path):
    import json

    kb_file = tmp_path / "kb.jsonl"
    kb_file.write_text("\n".join(json.dumps({"id": r.id, "text": r.text, "label": r.label}) for r in KB))
    q_file = tmp_path / "q.jsonl"
    q_file.write_text(json.dumps({"text": "Is it raining?", "label": "weather", "lang": "en"}) + "\n")
    report = evaluate(encoder, kb_file, q_file, k_values=(1, 5))
    assert set(report["overall"]) == {"mrr", "hit@1", "hit@5", "ndcg@10", "n_queries"}
    with pytest.raises(ValueError, match="k_values"):
        evaluate(encoder, KB, [QueryRecord("x", label="weather")], k_values=(0,))


def _fake_report(name: str, shift: float) -> dict:
    def m(v: float, n: int) -> dict:
        return {"mrr": v, "hit@1": v, "hit@3": v, "hit@10": v, "ndcg@10": v, "n_queries": n}

    return {"model": name, "overall": m(0.5 + shift, 30),
            "per_language": {"de": m(0.4 + shift, 10), "en": m(0.7 + shift, 10), "sw": m(0.3 + shift, 10)}}


def test_markdown_tables_and_png_chart(tmp_path):
    reports = {"base": _fake_report("base", 0.0), "tuned": _fake_report("tuned", 0.1)}
    md = report_markdown(reports)
    assert "| model | mrr | hit@1 | hit@3 | hit@10 | ndcg@10 |" in md
    assert "| tuned | 0.6000 |" in md
    assert "| sw | 10 | 0.3000 | 0.4000 |" in md
    one = format_report(reports["base"])
    assert "| **overall** | 30 | 0.5000 |" in one and "| de | 10 | 0.4000 |" in one
    with pytest.raises(ValueError, match="metric"):
        report_markdown(reports, metric="map")
    png = plot_per_language(reports, tmp_path / "sub" / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_languages_pick_and_order_rows_and_bars(tmp_path):
    reports = {"base": _fake_report("base", 0.0)}
    md = report_markdown(reports, languages=["sw", "en"])
    assert md.index("| sw |") < md.index("| en |") and "| de |" not in md
    with pytest.raises(ValueError, match="xx"):
        report_markdown(reports, languages=["xx"])
    assert plot_per_language(reports, tmp_path / "c.png", languages=["en"], title="t").exists()
