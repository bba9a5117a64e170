"""Every backend of one model shares a collection: same fingerprint, backend recorded, int8 queries allowed."""

from __future__ import annotations

import numpy as np
import pytest

from mlret_rag import ChromaStore, MultilingualEncoder, MultilingualRetriever

KB = [
    {"id": "pw", "text": "Reset your password with the 'Forgot password' link.", "label": "password"},
    {"id": "ship", "text": "Parcels arrive within three to five working days.", "label": "shipping"},
    {"id": "refund", "text": "Refunds reach your card within fourteen days.", "label": "refund"},
    {"id": "hours", "text": "Our support team answers from 9 am to 5 pm on weekdays.", "label": "hours"},
]
QUESTIONS = ["Wie setze ich mein Passwort zurück?", "我的包裹什么时候到？", "Pesa yangu itarudishwa lini?"]


@pytest.fixture(scope="module")
def torch_built_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("backend-db")
    store = ChromaStore(MultilingualEncoder(backend="torch"), path=path, show_progress_bar=False)
    store.add(KB)
    return path, MultilingualRetriever(store).retrieve_batch(QUESTIONS, k=4)


def test_collection_records_the_backend_that_built_it(torch_built_db):
    path, _ = torch_built_db
    store = ChromaStore(MultilingualEncoder(backend="torch"), path=path, show_progress_bar=False)
    assert store.info["backend"] == "torch"


@pytest.mark.parametrize(("backend", "tolerance"), [("onnx", 1e-4), ("onnx-int8", 0.03)])
def test_other_backends_query_a_torch_built_collection(torch_built_db, backend, tolerance):
    path, expected = torch_built_db
    retriever = MultilingualRetriever.open(path=path, backend=backend, create=False, show_progress_bar=False)
    assert retriever.encoder.backend == backend
    got = retriever.retrieve_batch(QUESTIONS, k=4)
    for want_hits, got_hits in zip(expected, got):
        assert got_hits[0].id == want_hits[0].id
        want = {h.id: h.score for h in want_hits}
        assert max(abs(h.score - want[h.id]) for h in got_hits) <= tolerance
    assert np.isclose(got[0][0].score, expected[0][0].score, atol=tolerance)
