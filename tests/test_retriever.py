"""MultilingualRetriever over the demo knowledge base, on an embedded store and a real Chroma server."""

from __future__ import annotations

import uuid

import pytest
from chroma_server import chroma_server_address  # noqa: F401  (fixture)

from mlret_rag.demo import load_demo_kb, load_demo_questions, run_demo
from mlret_rag.retriever import MultilingualRetriever, recorded_model
from mlret_rag.store import ChromaStore, MissingCollectionError, StoreClosedError


@pytest.fixture(scope="module", params=["embedded", "server"])
def retriever(request, encoder, tmp_path_factory) -> MultilingualRetriever:
    """The demo KB indexed once per backend."""
    if request.param == "embedded":
        where = {"path": tmp_path_factory.mktemp("retriever-db")}
    else:
        host, port = request.getfixturevalue("chroma_server_address")
        where = {"host": host, "port": port}
    store = ChromaStore(encoder, collection=f"demo-{uuid.uuid4().hex[:8]}", show_progress_bar=False, **where)
    store.add(load_demo_kb())
    return MultilingualRetriever(store)


@pytest.mark.parametrize(
    ("question", "label"),
    [
        ("Wie setze ich mein Passwort zurück?", "password_reset"),
        ("Ich möchte meine Bestellung stornieren.", "cancel_order"),
        ("我的包裹在哪里？", "track_order"),
        ("退款什么时候到账？", "refund_status"),
    ],
)
def test_german_and_chinese_questions_find_the_right_label(retriever, question, label):
    assert retriever.retrieve(question, k=1)[0].label == label
    assert retriever.top_labels(question, k=10)[0][0] == label


def test_batch_matches_single_queries(retriever):
    questions = [q.text for q in load_demo_questions()[:5]]
    batch = retriever.retrieve_batch(questions, k=3)
    for question, hits in zip(questions, batch):
        single = retriever.retrieve(question, k=3)
        assert [h.id for h in hits] == [h.id for h in single]
        assert [h.score for h in hits] == pytest.approx([h.score for h in single], abs=1e-5)
    assert retriever.retrieve_batch([], k=3) == []


def test_top_labels_take_each_labels_best_score(retriever):
    question = "Mujhe refund kab milega?"
    hits = retriever.retrieve(question, k=10)
    expected: dict[str, float] = {}
    for hit in hits:
        expected[hit.label] = max(expected.get(hit.label, -1.0), hit.score)
    labels = retriever.top_labels(question, k=10)
    assert [name for name, _ in labels] == sorted(expected, key=lambda name: -expected[name])
    assert dict(labels) == pytest.approx(expected)


def test_where_filter_and_bad_query(retriever):
    hits = retriever.retrieve("Où est mon colis ?", k=3, where={"label": "billing_charge"})
    assert len(hits) == 3 and {h.label for h in hits} == {"billing_charge"}
    assert all(h.metadata == {"lang": "en"} for h in hits)
    with pytest.raises(TypeError, match="query must be a string"):
        retriever.retrieve(["not", "a", "string"])  # type: ignore[arg-type]


def test_open_reuses_the_recorded_model_and_refuses_missing_collections(encoder, tmp_path):
    store = ChromaStore(encoder, path=tmp_path, collection="faq", show_progress_bar=False)
    store.add(load_demo_kb()[:6])
    with MultilingualRetriever.open(path=tmp_path, collection="faq", create=False) as opened:
        assert opened.encoder.fingerprint == encoder.fingerprint
        assert opened.retrieve("Where is my order?", k=1)[0].label == "track_order"
    with pytest.raises(StoreClosedError):
        opened.retrieve("Where is my order?")
    with pytest.raises(MissingCollectionError, match="no collection 'other'"):
        MultilingualRetriever.open(path=tmp_path, collection="other", create=False)


def test_recorded_model_prefers_an_existing_local_folder(tmp_path):
    assert recorded_model({}) is None
    assert recorded_model({"encoder": "multilingual-e5-small", "model_path": str(tmp_path)}) is None
    assert recorded_model({"encoder": "my-finetuned", "model_path": str(tmp_path)}) == str(tmp_path)
    assert recorded_model({"encoder": "org/model", "model_path": str(tmp_path / "gone")}) == "org/model"


def test_demo_answers_most_questions_in_seven_languages():
    rows = run_demo(print_table=False)
    langs = {r.lang for r in rows}
    assert len(rows) == len(load_demo_questions())
    assert {"de", "es", "fr", "zh", "ar", "sw", "hi-Latn"} <= langs
    assert all(0.0 < r.score <= 1.0 for r in rows)
    assert sum(r.correct for r in rows) >= 0.7 * len(rows)
