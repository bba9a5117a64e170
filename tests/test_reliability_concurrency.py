"""Issue 14, items 1 and 2: one writer per embedded database across processes (readers never wait), and
``verify`` / ``mlret check [--repair]`` finding and fixing records whose vectors were lost."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from chroma_server import HOST, ServerProxy, chroma_server_address  # noqa: F401 (fixture)
from filelock import FileLock
from support import kill_when_committed
from typer.testing import CliRunner

from mlret_rag.cli import app
from mlret_rag.cli.store_commands import shard_of
from mlret_rag.kb import load_kb
from mlret_rag.store import ChromaStore

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["password", "parcel", "refund", "invoice", "account", "delivery", "voucher", "warranty"]


def write_kb(path: Path, n: int, prefix: str = "r") -> Path:
    rows = [{"id": f"{prefix}{i}", "text": f"Question {prefix}-{i} about the {TOPICS[i % len(TOPICS)]}, case {i * 7 % 13}",
             "label": TOPICS[i % len(TOPICS)]} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def mlret_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "mlret_rag.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_mlret(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = mlret_process(*args)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_second_writer_waits_then_names_the_holder_and_readers_never_wait(encoder, tmp_path):
    db = tmp_path / "db"
    kb = write_kb(tmp_path / "kb.jsonl", 20)
    store = ChromaStore(encoder, path=db, show_progress_bar=False)
    store.add(load_kb(kb)[:10])
    with store.exclusive():  # this test process is "the other writer", deterministically
        holder = json.loads((db / "mlret-writer.json").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        writer = run_mlret("index", "--kb", str(kb), "--db", str(db), "--lock-timeout", "1", "--quiet")
        reader = run_mlret("query", "Where is my parcel?", "--db", str(db), "--json", "-k", "1")
    assert writer.returncode == 1, writer.stderr
    lines = writer.stderr.strip().splitlines()
    assert "waiting up to 1s" in lines[0] and f"pid {os.getpid()}" in lines[0]
    assert lines[-1].startswith(f"error: another process is writing to the database {db} (pid {os.getpid()} on host "
                                f"{socket.gethostname()}, running `")
    assert "gave up after 1s" in lines[-1] and "Traceback" not in writer.stderr
    assert reader.returncode == 0, reader.stderr  # readers are not blocked by the writer lock
    assert len(json.loads(reader.stdout)["hits"]) == 1
    assert store.count() == 10 and not (db / "mlret-writer.json").exists()
    # released: the same command now goes through and adds the rest
    again = run_mlret("index", "--kb", str(kb), "--db", str(db), "--lock-timeout", "1", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "added 10" in again.stdout and store.count() == 20
    store.close()


def test_a_new_database_is_created_only_by_the_writer_lock_holder(tmp_path):
    """CI saw two `mlret index` on a new folder both fail while Chroma created its tables ("table
    collections already exists", "database is locked"): creating a database is a write, so it waits."""
    db = tmp_path / "db"
    kb = write_kb(tmp_path / "kb.jsonl", 5)
    db.mkdir()
    with FileLock(db / "mlret-writer.lock"):  # another process holds the lock, e.g. while it creates
        waited = run_mlret("index", "--kb", str(kb), "--db", str(db), "--lock-timeout", "1", "--quiet")
        assert not (db / "chroma.sqlite3").exists()
    assert waited.returncode == 1
    assert waited.stderr.strip().splitlines()[-1].startswith(f"error: another process is writing to the database {db}")
    done = run_mlret("index", "--kb", str(kb), "--db", str(db), "--lock-timeout", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert (db / "mlret-ready").is_file()
    with FileLock(db / "mlret-writer.lock"):  # once created, reading needs no lock
        reader = run_mlret("query", "Where is my parcel?", "--db", str(db), "--json", "-k", "1")
    assert reader.returncode == 0, reader.stderr


def test_two_concurrent_indexers_on_one_database_lose_no_vector(encoder, tmp_path):
    """The reported failure: two `mlret index` on one embedded collection left 522 of 3,000 records
    without a vector. Now the second waits for the first, then finds everything stored."""
    db = tmp_path / "db"
    kb = write_kb(tmp_path / "kb.jsonl", 600)
    procs = [mlret_process("index", "--kb", str(kb), "--db", str(db), "--lock-timeout", "600", "--quiet",
                           "--batch-size", "64") for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outs = sorted(out for out, _ in results)
    assert all("600 stored" in out for out in outs)
    assert sum(int(out.split("encoded ")[1].split(" ")[0]) for out in outs) == 600  # each record encoded once
    with ChromaStore(encoder, path=db, show_progress_bar=False) as store:
        report = store.verify()
    assert report.ok, report.summary()
    assert (report.count, report.checked) == (600, 600)


def _segment_dirs(db: Path) -> list[Path]:
    return [p for p in db.iterdir() if p.is_dir()]


def test_check_finds_lost_vectors_and_repair_restores_them(encoder, tmp_path):
    """Lost vectors made deterministically: the vector index files are put back to an older copy (as a
    partial restore or a second writer overwriting them does), so 1,001 records keep their text and
    metadata but have no vector."""
    db = tmp_path / "db"
    first = load_kb(write_kb(tmp_path / "a.jsonl", 1001, prefix="a"))
    second = load_kb(write_kb(tmp_path / "b.jsonl", 1001, prefix="b"))
    with ChromaStore(encoder, path=db, show_progress_bar=False) as store:
        store.add(first)
    (segment,) = _segment_dirs(db)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(segment, snapshot)
    with ChromaStore(encoder, path=db, show_progress_bar=False) as store:
        store.add(second)
    shutil.rmtree(segment)
    shutil.copytree(snapshot, segment)

    with ChromaStore(encoder, path=db, show_progress_bar=False) as store:
        report = store.verify()
        assert not report.ok and report.count == 2002 and report.checked == 2002
        assert sorted(report.missing_vector) == sorted(r.id for r in second)
        assert store.add(second).unchanged == 1001  # why re-indexing alone never repaired it

    kb_b = tmp_path / "b.jsonl"
    index = CliRunner().invoke(app, ["index", "--kb", str(kb_b), "--db", str(db), "--quiet"])
    assert index.exit_code == 1 and "1001 without a vector" in index.stderr and "mlret check --repair" in index.stderr

    check = CliRunner().invoke(app, ["check", "--db", str(db)])
    assert check.exit_code == 1
    assert "checked 2002 of 2002 records: 1001 without a vector" in check.stdout

    repair = CliRunner().invoke(app, ["check", "--db", str(db), "--repair"])
    assert repair.exit_code == 0, repair.output
    assert "repaired 1001 records; now: " in repair.stdout and "no damage found" in repair.stdout

    with ChromaStore(encoder, path=db, show_progress_bar=False) as store:
        report = store.verify()
        assert report.ok, report.summary()
        hits = store.query(encoder.encode_documents([second[5].text]), k=1)
        assert hits[0][0].id == second[5].id and hits[0][0].score > 0.999


def _server_state(encoder, host: str, port: int, collection: str) -> dict:
    """Every record of a server collection: text, label, metadata and vector, by id."""
    import numpy as np

    with ChromaStore(encoder, host=host, port=port, collection=collection, show_progress_bar=False) as store:
        assert store.verify().ok
        got = store.collection.get(include=["documents", "metadatas", "embeddings"])
    return {rid: (doc, meta, np.round(np.asarray(vec), 5).tolist())
            for rid, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])}


def test_two_concurrent_indexers_into_one_server_collection_lose_no_vector(encoder, tmp_path, chroma_server_address):  # noqa: F811
    """Server mode has no writer lock (Chroma serialises writes itself): both runs finish and nothing is lost."""
    host, port = chroma_server_address
    kb = write_kb(tmp_path / "kb.jsonl", 300)
    procs = [mlret_process("index", "--kb", str(kb), "--host", host, "--port", str(port), "--collection", "twice",
                           "--quiet", "--batch-size", "32") for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert all("300 stored" in out for out, _ in results)
    state = _server_state(encoder, host, port, "twice")
    assert sorted(state) == sorted(r.id for r in load_kb(kb))


def test_index_workers_shard_a_kb_into_one_server_and_a_killed_worker_converges(encoder, tmp_path,
                                                                                  chroma_server_address):  # noqa: F811
    host, port = chroma_server_address
    kb = write_kb(tmp_path / "kb.jsonl", 320)
    where = ["--host", host, "--port", str(port)]
    one = run_mlret("index", "--kb", str(kb), *where, "--collection", "one", "--quiet", "--batch-size", "32")
    assert one.returncode == 0, one.stderr
    proxy = ServerProxy(chroma_server_address)  # the workers get the header in their environment, not argv
    try:
        two = run_mlret("index", "--kb", str(kb), "--host", HOST, "--port", str(proxy.port), "--collection", "two",
                        "--workers", "2", "--batch-size", "32", "--header", "X-Team=search")
        heads = proxy.requests()
    finally:
        proxy.close()
    assert two.returncode == 0, two.stderr
    assert sum(h.startswith("post ") and "/add " in h for h in heads) >= 2  # the workers' writes went through it
    assert all("\r\nx-team: search" in h for h in heads)
    assert "with 2 workers" in two.stdout and "320 stored" in two.stdout
    shards = [line for line in two.stdout.splitlines() if line.startswith("worker ")]
    assert len(shards) == 2 and all("(shard " in line for line in shards)
    assert sum(int(line.split("indexed ")[1].split(" ")[0]) for line in shards) == 320  # disjoint shards
    reference = _server_state(encoder, host, port, "one")
    assert _server_state(encoder, host, port, "two") == reference

    # one worker killed once two batches of its shard are in the database; the same command then finishes the job
    shard = sum(shard_of(r.id, 2) == 0 for r in load_kb(kb))
    with ChromaStore(encoder, host=host, port=port, collection="killed", show_progress_bar=False) as store:
        worker = mlret_process("index", "--kb", str(kb), *where, "--collection", "killed", "--shard", "0/2",
                               "--batch-size", "32", "--quiet")
        killed_at = kill_when_committed(worker, store.count, at_least=64, total=shard)
        assert 64 <= killed_at <= store.count() < shard
    again = run_mlret("index", "--kb", str(kb), *where, "--collection", "killed", "--workers", "2",
                      "--batch-size", "32", "--quiet")
    assert again.returncode == 0, again.stderr
    assert _server_state(encoder, host, port, "killed") == reference


def test_scale_out_options_are_checked_before_anything_runs(tmp_path):
    kb = write_kb(tmp_path / "kb.jsonl", 3)
    cases = {
        ("--workers", "2", "--db", str(tmp_path / "db")): "--workers needs a Chroma server",
        ("--workers", "2", "--shard", "0/2", "--host", "127.0.0.1"): "not both",
        ("--shard", "2/2", "--db", str(tmp_path / "db")): "I must be in 0..N-1",
        ("--shard", "half", "--db", str(tmp_path / "db")): "--shard must look like I/N",
        ("--shard", "0/2", "--prune", "--db", str(tmp_path / "db")): "would delete the other shards",
    }
    for args, message in cases.items():
        result = CliRunner().invoke(app, ["index", "--kb", str(kb), *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    assert not (tmp_path / "db").exists()
