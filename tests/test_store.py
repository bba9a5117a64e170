"""ChromaStore behaviour, run against an embedded database and against a real Chroma server."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from chroma_server import chroma_server_address, free_port  # noqa: F401  (fixture)
from support import EncoderFailingAt, cosines, kill_when_committed
from typer.testing import CliRunner

from mlret_rag.cli import app
from mlret_rag.errors import EncoderMismatchError, StoreConnectionError
from mlret_rag.kb import KBRecord, load_kb
from mlret_rag.store import ChromaStore, MissingCollectionError, default_db_path, open_client

REPO = Path(__file__).resolve().parents[1]
RECORDS = [
    KBRecord(id="r1", text="How do I reset my password? Use the 'Forgot password' link.", label="password",
             lang="en", metadata={"section": "account", "views": 12}),
    KBRecord(id="r2", text="Where is my parcel? Track it under 'My orders'.", label="shipping", lang="en"),
    KBRecord(id="r3", text="How do I return an item? Print the prepaid label.", label="returns", lang="en",
             metadata={"free": True}),
    KBRecord(id="r4", text="Which payment methods do you accept? Cards and PayPal.", label="payment"),
    KBRecord(id="r5", text="I was charged twice for one order.", label="billing", metadata={"score": 0.5}),
]


@pytest.fixture(params=["embedded", "server"])
def backend(request, tmp_path) -> dict:
    """Where a store lives: an embedded folder, or the session's real Chroma server."""
    if request.param == "embedded":
        return {"path": tmp_path / "db"}
    host, port = request.getfixturevalue("chroma_server_address")
    return {"host": host, "port": port}


@pytest.fixture
def collection_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_store(encoder, backend, collection_name):
    def make(enc=None, **kw) -> ChromaStore:
        kw.setdefault("collection", collection_name)
        return ChromaStore(enc or encoder, show_progress_bar=False, **backend, **kw)

    return make


@pytest.fixture(scope="module")
def other_encoder():
    """Same weights, no prompts: a different fingerprint."""
    from mlret_rag import MultilingualEncoder

    return MultilingualEncoder(prompts={"query": "", "document": ""})


def test_add_get_count_delete(make_store):
    store = make_store()
    result = store.add(RECORDS)
    assert (result.added, result.updated, result.unchanged, result.encoded) == (5, 0, 0, 5)
    assert store.count() == 5
    assert store.get(["r3", "missing", "r1"]) == [RECORDS[2], RECORDS[0]]
    assert sorted(store.ids()) == ["r1", "r2", "r3", "r4", "r5"]
    store.delete(["r1", "not-there"])
    assert store.count() == 4 and store.get(["r1"]) == []


def test_scores_are_cosine_similarity_best_first(make_store, encoder):
    store = make_store()
    store.add(RECORDS)
    query = encoder.encode_queries(["Wie setze ich mein Passwort zurück?"])
    hits = store.query(query, k=3)[0]
    assert hits[0].id == "r1"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        doc = encoder.encode_documents([hit.text])[0]
        assert hit.score == pytest.approx(float(query[0] @ doc), abs=1e-4)
    assert hits[0].label == "password"
    assert hits[0].metadata == {"section": "account", "views": 12, "lang": "en"}


def test_where_filter_and_k_above_count(make_store, encoder):
    store = make_store()
    store.add(RECORDS)
    vec = encoder.encode_queries(["money"])
    assert [h.id for h in store.query(vec, k=10, where={"label": "returns"})[0]] == ["r3"]
    assert len(store.query(vec, k=50)[0]) == 5
    with pytest.raises(ValueError, match="k must be a positive integer"):
        store.query(vec, k=0)
    with pytest.raises(ValueError, match=r"shape \(n, 384\)"):
        store.query(np.zeros((1, 3)), k=1)


def test_readding_is_a_no_op_and_changes_replace_the_record(make_store):
    store = make_store()
    store.add(RECORDS)
    again = store.add(RECORDS)
    assert (again.encoded, again.unchanged) == (0, 5)
    changed = KBRecord(id="r1", text="Reset your password from the sign-in page.", label="password")
    result = store.add([changed, *RECORDS[1:]])
    assert (result.added, result.updated, result.unchanged) == (0, 1, 4)
    assert store.get(["r1"]) == [changed]  # old metadata keys are gone, not merged
    assert store.count() == 5


def test_batches_stay_below_the_client_limit(make_store):
    store = make_store(batch_size=2)
    assert store.batch_size == 2
    assert store.add(load_kb([{"text": f"entry number {i}", "label": str(i % 2)} for i in range(7)])).added == 7
    assert store.count() == 7
    big = make_store(batch_size=10**9)
    assert big.batch_size == big.max_batch_size - 1 and big.max_batch_size > 2


def test_encoder_mismatch_names_both(make_store, encoder, other_encoder):
    make_store().add(RECORDS[:2])
    with pytest.raises(EncoderMismatchError) as err:
        make_store(other_encoder)
    assert encoder.fingerprint in str(err.value) and other_encoder.fingerprint in str(err.value)


def test_foreign_and_non_cosine_collections_are_refused(make_store, backend, collection_name):
    client, _ = open_client(**backend)
    client.create_collection(collection_name + "-l2", configuration={"hnsw": {"space": "l2"}},
                             metadata={"x": 1}, embedding_function=None)
    client.create_collection(collection_name + "-raw", configuration={"hnsw": {"space": "cosine"}},
                             metadata={"x": 1}, embedding_function=None)
    with pytest.raises(EncoderMismatchError, match="uses 'l2' distance"):
        make_store(collection=collection_name + "-l2")
    with pytest.raises(EncoderMismatchError, match="not created by mlret-rag"):
        make_store(collection=collection_name + "-raw")


def test_missing_collection_without_create(make_store):
    with pytest.raises(MissingCollectionError, match="has no collection"):
        make_store(create=False)


def _subprocess_env(home: Path) -> dict:
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_persistence_across_processes_and_no_chroma_default_model(make_store, backend, collection_name, tmp_path):
    """Another process indexes and queries with HOME pointing at an empty folder; Chroma's model cache
    (``~/.cache/chroma/onnx_models``) must stay absent, and this process sees what it stored."""
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent("""
        import json, sys
        from mlret_rag import MultilingualEncoder
        from mlret_rag.kb import load_kb
        from mlret_rag.retriever import MultilingualRetriever
        from mlret_rag.store import ChromaStore
        cfg = json.loads(sys.argv[1])
        store = ChromaStore(MultilingualEncoder(), show_progress_bar=False, **cfg)
        store.add(load_kb(sys.argv[2]))
        hits = MultilingualRetriever(store).retrieve("¿Dónde está mi paquete?", k=1)
        print(json.dumps({"count": store.count(), "top": hits[0].id}))
    """)
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(r.__dict__) for r in RECORDS) + "\n")
    cfg = {k: str(v) if isinstance(v, Path) else v for k, v in backend.items()}
    cfg["collection"] = collection_name
    out = subprocess.run([sys.executable, "-c", script, json.dumps(cfg), str(kb)], env=_subprocess_env(home), check=False,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"count": 5, "top": "r2"}
    assert not (home / ".cache" / "chroma").exists()
    store = make_store()
    assert store.count() == 5 and store.get(["r5"]) == [RECORDS[4]]


def _numbered_records(n: int) -> list[KBRecord]:
    return [KBRecord(id=f"q{i:03d}", text=f"Support question number {i}: how do I change setting {i} of my account "
                     f"and order {i * 7}?", label=f"topic-{i % 3}", metadata={"n": i}) for i in range(n)]


@pytest.mark.parametrize(("fail_on", "error"), [(1, RuntimeError("injected crash")), (3, KeyboardInterrupt()),
                                                (5, MemoryError("injected"))], ids=["first", "middle", "last"])
def test_add_failing_at_a_batch_keeps_the_batches_before_and_resumes(make_store, encoder, fail_on, error):
    """A crash injected at encoding call ``fail_on`` (batch size 4, 18 records: the 5th batch is the short last
    one): exactly the batches before it are stored, with their vectors; adding again encodes only the rest."""
    records, size = _numbered_records(18), 4
    committed = records[: (fail_on - 1) * size]
    failing = EncoderFailingAt(encoder, fail_on, error)
    with make_store(failing, batch_size=size) as broken:
        with pytest.raises(type(error)):
            broken.add(records)
        assert len(failing.texts) == fail_on  # it stopped at the failing batch
        assert broken.count() == len(committed)
        assert broken.get([r.id for r in records]) == committed
        report = broken.verify()
        assert report.ok and report.checked == len(committed), report.summary()
        if committed:
            got = broken.collection.get(ids=[r.id for r in committed], include=["embeddings"])
            stored = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
            expected = encoder.encode_documents([r.text for r in committed])
            assert cosines(np.stack([stored[r.id] for r in committed]), expected).min() > 0.9999

    counting = EncoderFailingAt(encoder)
    with make_store(counting, batch_size=size) as resumed:
        result = resumed.add(records)
        assert (result.added, result.updated, result.unchanged) == (len(records) - len(committed), 0, len(committed))
        assert counting.encoded == [r.text for r in records[len(committed):]]  # only the missing ones
        assert resumed.count() == len(records)
        assert resumed.get([r.id for r in records]) == records
        report = resumed.verify()
        assert report.ok and report.checked == len(records), report.summary()


def _stored_line(output: str) -> dict[str, int]:
    """The numbers of `mlret index`'s summary line (encoded, added, updated, unchanged, stored)."""
    found = re.search(r"encoded (\d+) \(added (\d+), updated (\d+)\), unchanged (\d+); (\d+) stored", output)
    assert found, output[-2000:]
    return dict(zip(["encoded", "added", "updated", "unchanged", "stored"], map(int, found.groups())))


def test_resume_after_killed_indexing(make_store, backend, collection_name, tmp_path):
    """SIGKILL `mlret index` once the database holds at least one committed batch (read from this process) and
    not the whole KB; indexing again ends with exactly the KB, re-encoding only what was not committed."""
    n, size = 240, 8
    kb = tmp_path / "big.jsonl"
    kb.write_text("\n".join(json.dumps(r.__dict__) for r in _numbered_records(n)) + "\n")
    records = load_kb(kb)
    where = ["--db", str(backend["path"])] if "path" in backend else \
        ["--host", backend["host"], "--port", str(backend["port"])]
    command = [str(Path(sys.executable).with_name("mlret")), "index", "--kb", str(kb), "--collection", collection_name,
               "--batch-size", str(size), "--quiet", *where]
    log = tmp_path / "killed.log"
    # The collection exists (empty) before the writer starts. The poller is closed before anything else in this
    # process touches the database: an embedded Chroma client reads the log of other processes' writes only
    # when it first opens a collection, so a client kept open across them would see stale vectors.
    with make_store() as poller, log.open("wb") as out:
        assert poller.count() == 0
        proc = subprocess.Popen(command, env=_subprocess_env(tmp_path), stdout=out, stderr=subprocess.STDOUT)
        seen = kill_when_committed(proc, poller.count, at_least=size, total=n, log=log)
    with make_store() as after_kill:
        stored = after_kill.count()
        report = after_kill.verify()
    assert seen <= stored < n and stored % size == 0, (seen, stored)  # whole batches, at least what was seen
    assert report.ok, report.summary()

    again = subprocess.run(command, env=_subprocess_env(tmp_path), capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _stored_line(again.stdout) == {"encoded": n - stored, "added": n - stored, "updated": 0,
                                          "unchanged": stored, "stored": n}
    check = CliRunner().invoke(app, ["check", *where, "--collection", collection_name])
    assert check.exit_code == 0 and f"checked {n} of {n} records, no damage found" in check.output, check.output
    with make_store() as final:
        assert final.get([r.id for r in records]) == records and final.count() == n
    assert not (tmp_path / ".cache" / "chroma").exists()


def test_dead_server_names_host_and_port(encoder):
    port = free_port()
    with pytest.raises(StoreConnectionError, match=rf"127\.0\.0\.1:{port}"):
        ChromaStore(encoder, host="127.0.0.1", port=port)


def test_wrong_server_names_host_and_port(encoder):
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(StoreConnectionError, match=rf"127\.0\.0\.1:{port} did not answer as a Chroma server"):
            ChromaStore(encoder, host="127.0.0.1", port=port)
    finally:
        server.shutdown()
        server.server_close()


def test_location_arguments_are_checked(encoder, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        ChromaStore(encoder, path=tmp_path, host="127.0.0.1")
    with pytest.raises(ValueError, match="port must be an integer"):
        ChromaStore(encoder, host="127.0.0.1", port=70000)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ChromaStore(encoder, path=tmp_path, batch_size=0)


def test_default_db_path_follows_mlret_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MLRET_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "db"


def test_close_releases_the_client_and_other_stores_keep_working(make_store, encoder):
    from mlret_rag.store import StoreClosedError

    records = [{"id": "a", "text": "Turn on the kitchen lights.", "label": "on"}]
    with make_store() as first:
        first.add(records)
        second = make_store()  # same database and collection, its own client
    with pytest.raises(StoreClosedError, match="is closed"):
        first.query(encoder.encode_queries(["lights"]), k=1)
    first.close()  # idempotent
    assert [h.id for h in second.query(encoder.encode_queries(["lights"]), k=1)[0]] == ["a"]
    second.close()
    with make_store() as reopened:  # everything written before closing is there
        assert reopened.count() == 1
