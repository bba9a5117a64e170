"""One index, questions in six languages: the core, `mlret query`, LlamaIndex and LangChain agree.

Each entry point opens the database on its own (as a user would), so the test checks the whole path,
and the scores are checked against the cosine of the encoder's own vectors.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlret_rag import ChromaStore, MultilingualEncoder, MultilingualRetriever, load_kb
from mlret_rag.demo import demo_kb_path

QUESTIONS = [
    "Wo ist meine Bestellung?",
    "¿Cómo restablezco mi contraseña?",
    "Je voudrais annuler ma commande.",
    "我怎么申请退款？",
    "Nataka kubadilisha anwani yangu ya kusafirisha.",
    "mera password reset kaise karu?",
]
K = 4


@pytest.fixture(scope="module")
def db(tmp_path_factory, encoder):
    path = tmp_path_factory.mktemp("same-answers")
    ChromaStore(encoder, path=path, collection="faq", show_progress_bar=False).add(load_kb(demo_kb_path()))
    return path


def test_same_ids_order_and_scores_everywhere(db, encoder):
    from langchain_mlret import MLRetRetriever as LangChainRetriever
    from llama_index.retrievers.mlret import MLRetRetriever as LlamaIndexRetriever

    core = MultilingualRetriever.open(path=db, collection="faq", create=False, show_progress_bar=False)
    llama = LlamaIndexRetriever.from_defaults(path=db, collection="faq", similarity_top_k=K)
    chain = LangChainRetriever.open(path=db, collection="faq", k=K)
    texts = {r.id: r.text for r in load_kb(demo_kb_path())}
    for question in QUESTIONS:
        from_core = [(h.id, h.score) for h in core.retrieve(question, k=K)]
        from_llama = [(n.node.node_id, n.score) for n in llama.retrieve(question)]
        from_chain = [(d.id, d.metadata["score"]) for d in chain.invoke(question)]
        assert len(from_core) == K
        for other in (from_llama, from_chain):
            assert [i for i, _ in other] == [i for i, _ in from_core], question
            np.testing.assert_allclose([s for _, s in other], [s for _, s in from_core], atol=1e-6)
        # The score is the cosine of our own query and document vectors.
        q = encoder.encode_queries([question])[0]
        d = encoder.encode_documents([texts[i] for i, _ in from_core])
        np.testing.assert_allclose(d @ q, [s for _, s in from_core], atol=2e-4)


def test_cli_reports_the_same_hits(db):
    question = QUESTIONS[0]
    core = MultilingualRetriever.open(path=db, collection="faq", create=False, show_progress_bar=False)
    expected = [(h.id, h.score) for h in core.retrieve(question, k=K)]
    out = subprocess.run(
        [sys.executable, "-m", "mlret_rag.cli", "query", question, "--db", str(db), "--collection", "faq",
         "-k", str(K), "--json"],
        capture_output=True, text=True, check=True,
    )
    hits = json.loads(out.stdout)["hits"]
    assert [h["id"] for h in hits] == [i for i, _ in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-5)


def test_backends_rank_alike_on_one_index(db):
    fp32 = MultilingualRetriever(ChromaStore(MultilingualEncoder(backend="onnx"), path=db, collection="faq",
                                             create=False, show_progress_bar=False))
    torch = MultilingualRetriever(ChromaStore(MultilingualEncoder(backend="torch"), path=db, collection="faq",
                                              create=False, show_progress_bar=False))
    for question in QUESTIONS:
        assert [h.id for h in fp32.retrieve(question, k=K)] == [h.id for h in torch.retrieve(question, k=K)]
