"""Issue 13, item 3: one StoreLocation value (embedded folder, Chroma server, or a client of your own),
checked once and passed through the store, the retriever, the CLI and the adapters; against the real
model, embedded Chroma and a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

import pickle
import time
import uuid

import chromadb
import pytest
from chroma_server import HOST, ServerProxy, chroma_server_address  # noqa: F401 (fixture)
from typer.testing import CliRunner

import mlret_rag.store
from mlret_rag import ChromaStore, MultilingualRetriever, StoreLocation
from mlret_rag.cli import app
from mlret_rag.errors import StoreConnectionError
from mlret_rag.kb import KBRecord
from mlret_rag.location import LocationKeywords, default_db_path
from mlret_rag.store import open_client, read_collection_info

RECORDS = [KBRecord(id=f"r{i}", text=t, label=label) for i, (t, label) in enumerate([
    ("How do I reset my password?", "password"), ("Where is my parcel?", "shipping"),
    ("How do I return an item?", "returns")])]


@pytest.fixture
def name() -> str:
    return f"loc-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------------------------------------- the value
@pytest.mark.parametrize(("fields", "message"), [
    ({"path": "db", "host": HOST}, r"give either path \(embedded database\) or host/port \(Chroma server\), not both"),
    ({"port": 8000}, r"port needs host \(a Chroma server\)"),
    ({"auth_token": "t"}, "auth_token needs host"),
    ({"ssl": True, "headers": {"X-A": "b"}}, "ssl and headers need host"),
    ({"host": HOST, "port": 70000}, r"port must be an integer in 1\.\.65535, got 70000"),
    ({"host": HOST, "port": "8000"}, "port must be an integer"),
    ({"host": "https://chroma.example"}, "host must be a host name or address .*for https give ssl=True"),
    ({"host": ""}, "host must be a host name"),
    ({"host": HOST, "ssl": "yes"}, "ssl must be True or False"),
    ({"host": HOST, "headers": {"X-Team": 3}}, "headers: the value of 'X-Team' must be a string"),
    ({"host": HOST, "headers": {"bad name": "x"}}, "headers: 'bad name' is not an HTTP header name"),
    ({"host": HOST, "headers": {"X-A": "a\r\nX-B: b"}}, "headers: the value of 'X-A' must be a string on one line"),
    ({"host": HOST, "headers": {"X-A": "1", "x-a": "2"}}, "headers: 'x-a' is given twice"),
    ({"host": HOST, "headers": ["X-A"]}, "headers must be a mapping"),
    ({"host": HOST, "auth_token": "t", "headers": {"Authorization": "Basic x"}},
     "give auth_token or an Authorization header, not both"),
    ({"host": HOST, "tenant": ""}, "tenant must not be empty"),
    ({"host": HOST, "database": 7}, "database must be a string"),
    ({"host": HOST, "timeout": 0}, "timeout must be a positive number of seconds, got 0"),
    ({"host": HOST, "connect_timeout": -1}, "connect_timeout must be a positive number"),
    ({"retries": -1}, "retries must be a non-negative integer, got -1"),
    ({"path": 3}, "path must be a folder path"),
    ({"client": "not a client"}, r"client must be a chromadb client \(chromadb.PersistentClient"),
])
def test_invalid_fields_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        StoreLocation(**fields)


def test_a_client_goes_alone(tmp_path):
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    try:
        with pytest.raises(ValueError, match="give either client .* or path/host, not both"):
            StoreLocation(client=client, path=tmp_path)
        with pytest.raises(ValueError, match="give either client"):
            StoreLocation(client=client, host=HOST)
        with pytest.raises(ValueError, match="tenant, timeout: settings of the client itself"):
            StoreLocation(client=client, tenant="t", timeout=3)
        assert StoreLocation(client=client, retries=0).retries == 0
    finally:
        client.close()


def test_describe_repr_and_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("MLRET_HOME", str(tmp_path))
    assert mlret_rag.store.default_db_path is default_db_path  # still importable from the store
    assert str(StoreLocation()) == f"embedded:{tmp_path / 'db'}" and StoreLocation().path is None
    assert StoreLocation(path=str(tmp_path)).describe() == f"embedded:{tmp_path}"
    server = StoreLocation(host=HOST, headers={"X-Team": "search"}, auth_token="s3cret", tenant="acme")
    assert server.port == 8000 and str(server) == f"{HOST}:8000 (tenant 'acme')"
    assert "s3cret" not in repr(server) and "search" not in repr(server) and "X-Team" in repr(server)
    assert server.request_headers() == {"X-Team": "search", "Authorization": "Bearer s3cret"}
    assert server.remote and server.folder is None and not StoreLocation().remote
    with pytest.raises(TypeError):
        server.headers["X-Other"] = "x"  # read-only, like the rest of the frozen value
    assert server == StoreLocation(host=HOST, port=8000, headers={"X-Team": "search"}, auth_token="s3cret",
                                   tenant="acme")
    assert pickle.loads(pickle.dumps(server)) == server  # e.g. handed to another process
    assert len({server, StoreLocation(host=HOST, port=8000)}) == 2  # hashable
    assert set(LocationKeywords.__annotations__) == {f for f in StoreLocation.__dataclass_fields__}


def test_timeouts_come_from_the_fields_then_the_environment(monkeypatch):
    monkeypatch.delenv("MLRET_CHROMA_TIMEOUT", raising=False)
    monkeypatch.setenv("MLRET_CHROMA_CONNECT_TIMEOUT", "2.5")
    assert StoreLocation(host=HOST).timeouts() == (60.0, 2.5)
    assert StoreLocation(host=HOST, timeout=3, connect_timeout=1).timeouts() == (3.0, 1.0)
    assert StoreLocation(host=HOST).read_timeout == 60.0 and StoreLocation().read_timeout is None
    monkeypatch.setenv("MLRET_CHROMA_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MLRET_CHROMA_TIMEOUT must be a number of seconds, got 'soon'"):
        StoreLocation(host=HOST).timeouts()


def test_location_or_its_fields_not_both(encoder, tmp_path):
    where = StoreLocation(path=tmp_path / "db")
    assert StoreLocation.resolve(where) is where
    assert StoreLocation.resolve(None, path=tmp_path, host=None) == StoreLocation(path=tmp_path)
    with pytest.raises(ValueError, match="give either location= or path=, not both"):
        ChromaStore(encoder, where, path=tmp_path / "other")
    with pytest.raises(ValueError, match="give either location= or host=, not both"):
        read_collection_info(where, host=HOST)
    with pytest.raises(ValueError, match="give either location= or client=, not both"):
        MultilingualRetriever.open(location=where, client=object())
    with pytest.raises(TypeError, match="unexpected keyword argument 'hots'"):
        ChromaStore(encoder, hots=HOST)
    with pytest.raises(TypeError, match="location must be a StoreLocation, got str"):
        ChromaStore(encoder, "kb-db")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------- embedded
def test_a_location_value_and_the_old_keywords_open_the_same_store(encoder, tmp_path, name):
    db = tmp_path / "db"
    with ChromaStore(encoder, StoreLocation(path=db), collection=name, show_progress_bar=False) as store:
        store.add(RECORDS)
        assert store.location == f"embedded:{db}" and store.store_location == StoreLocation(path=db)
    with ChromaStore(encoder, path=db, collection=name, show_progress_bar=False) as store:
        assert store.count() == 3
    client, where = open_client(StoreLocation(path=db))
    try:
        assert where == f"embedded:{db}" and client.get_collection(name).count() == 3
    finally:
        client.close()
    assert read_collection_info(StoreLocation(path=db), collection=name)["fingerprint"] == encoder.fingerprint
    assert read_collection_info(path=tmp_path / "nothing", collection=name) is None
    assert not (tmp_path / "nothing").exists()  # reading creates no database


def test_an_injected_persistent_client_is_used_as_is_and_left_open(encoder, tmp_path, name):
    db = tmp_path / "db"
    client = chromadb.PersistentClient(path=str(db))
    store = ChromaStore(encoder, client=client, collection=name, show_progress_bar=False)
    assert store.location == f"client:{db}" and store.store_location.client is client
    assert store.timeout is None  # the caller's client: no timeouts set on it
    store.add(RECORDS)
    with store.exclusive():  # the same writer lock as path=: the holder is recorded in the folder
        assert (db / "mlret-writer.json").is_file()
    store.close()
    assert client.get_collection(name).count() == 3  # close() left the caller's client usable
    with ChromaStore(encoder, path=db, collection=name, show_progress_bar=False) as second:
        hits = second.query(encoder.encode_queries(["Wo ist mein Paket?"]), k=1)[0]
        assert [h.id for h in hits] == ["r1"]
    retriever = MultilingualRetriever.open(location=StoreLocation(client=client), collection=name, create=False)
    assert retriever.retrieve("Wo ist mein Paket?", k=1)[0].id == "r1"
    retriever.close()
    assert client.heartbeat() > 0
    client.close()


def test_an_in_memory_client_takes_no_lock(encoder, name):
    client = chromadb.EphemeralClient()
    with ChromaStore(encoder, client=client, collection=name, show_progress_bar=False) as store:
        store.add(RECORDS[:1])
        assert store.location == "client:in-memory" and store.store_location.folder is None
    assert client.get_collection(name).count() == 1


def test_an_embedded_tenant_that_does_not_exist_is_one_clear_error(encoder, tmp_path):
    with pytest.raises(StoreConnectionError, match=r"embedded:.*\(tenant 'nope'\) has no tenant 'nope'"):
        ChromaStore(encoder, path=tmp_path / "db", tenant="nope")
    with ChromaStore(encoder, path=tmp_path / "db", tenant="default_tenant", database="default_database",
                     collection="defaults", show_progress_bar=False) as store:
        store.add(RECORDS[:1])
        assert store.location.endswith("(tenant 'default_tenant', database 'default_database')")
    with ChromaStore(encoder, path=tmp_path / "db", collection="defaults", show_progress_bar=False) as store:
        assert store.count() == 1  # the defaults are Chroma's own


# ------------------------------------------------------------------------------------------------- server
def test_an_injected_http_client_against_a_real_server(encoder, chroma_server_address, name):  # noqa: F811
    host, port = chroma_server_address
    client = chromadb.HttpClient(host=host, port=port)
    store = ChromaStore(encoder, client=client, collection=name, show_progress_bar=False)
    assert store.location == f"client:{host}:{port}" and store.store_location.remote
    store.add(RECORDS)
    store.close()
    assert client.get_collection(name).count() == 3  # still open
    assert read_collection_info(client=client, collection=name)["dimension"] == encoder.dimension
    with ChromaStore(encoder, host=host, port=port, collection=name, show_progress_bar=False) as second:
        assert sorted(second.ids()) == ["r0", "r1", "r2"]


def test_headers_and_the_token_reach_the_server(encoder, chroma_server_address, name):  # noqa: F811
    proxy = ServerProxy(chroma_server_address)
    try:
        where = StoreLocation(host=HOST, port=proxy.port, headers={"X-Team": "search"}, auth_token="s3cret")
        with ChromaStore(encoder, where, collection=name, show_progress_bar=False) as store:
            store.add(RECORDS[:1])
            assert store.count() == 1
        heads = proxy.requests()
        assert any(h.startswith("get /api/v2/heartbeat") for h in heads)  # the preflight carries them too
        assert any("/collections" in h.split("\r\n", 1)[0] for h in heads)
        for head in heads:
            assert "\r\nx-team: search" in head and "\r\nauthorization: bearer s3cret" in head, head
    finally:
        proxy.close()


def test_ssl_against_a_plain_http_server_fails_fast_naming_it(encoder, chroma_server_address, caplog):  # noqa: F811
    host, port = chroma_server_address
    start = time.monotonic()
    with caplog.at_level("WARNING", logger="mlret_rag.store"), pytest.raises(
            StoreConnectionError, match=rf"TLS handshake with the Chroma server at {host}:{port} failed"):
        ChromaStore(encoder, host=host, port=port, ssl=True, connect_timeout=2)
    assert "retrying" not in caplog.text  # a failed handshake is not retried
    assert time.monotonic() - start < 30  # and nothing waits for long (a loose bound: CI machines are busy)


def test_tenants_and_databases_on_a_real_server(encoder, chroma_server_address, name):  # noqa: F811
    host, port = chroma_server_address
    with pytest.raises(StoreConnectionError, match=rf"{host}:{port} \(tenant 'nope'\) has no tenant 'nope'"):
        ChromaStore(encoder, host=host, port=port, tenant="nope")
    with pytest.raises(StoreConnectionError, match="has no database 'nope' in tenant 'default_tenant'"):
        ChromaStore(encoder, host=host, port=port, database="nope")
    admin = chromadb.AdminClient(chromadb.config.Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host=host, chroma_server_http_port=port))
    tenant = f"t-{name}"
    admin.create_tenant(tenant)
    admin.create_database("prod", tenant=tenant)
    with ChromaStore(encoder, host=host, port=port, tenant=tenant, database="prod", collection=name,
                     show_progress_bar=False) as store:
        store.add(RECORDS)
        assert store.location == f"{host}:{port} (tenant '{tenant}', database 'prod')"
    with ChromaStore(encoder, host=host, port=port, collection=name, show_progress_bar=False) as default:
        assert default.count() == 0  # another tenant's collection of the same name is not this one
    info = read_collection_info(host=host, port=port, tenant=tenant, database="prod", collection=name)
    assert info["fingerprint"] == encoder.fingerprint


# ------------------------------------------------------------------------------------------------- CLI
def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_location_options_are_checked_once(tmp_path):
    db = str(tmp_path / "db")
    for args, message in {
        ("--db", db, "--ssl"): "--ssl needs --host",
        ("--db", db, "--header", "X-A=b"): "--header needs --host",
        ("--db", db, "--port", "1"): "--port needs --host",
        ("--db", db, "--host", HOST): "not both",
        ("--host", HOST, "--header", "X-A"): "--header must look like KEY=VALUE, got one without '='",
        ("--host", HOST, "--header", "X-A=1", "--header", "x-a=2"): "--header x-a is given twice",
        ("--host", HOST, "--header", "bad name=1"): "'bad name' is not an HTTP header name",
        ("--host", HOST, "--port", "70000"): "port must be an integer in 1..65535",
    }.items():
        for command in (["query", "hi"], ["check"]):
            result = _cli(*command, *args)
            assert result.exit_code == 1, (command, args, result.output)
            line = result.stderr.strip()
            assert "\n" not in line and line.startswith("error: ") and message in line, (command, args, line)


def test_cli_headers_from_the_environment_are_checked_and_never_echoed(tmp_path):
    for value, message in {
        "not json s3cret": "$MLRET_CHROMA_HEADERS must be a JSON object of header names to string values",
        '["X-A", "s3cret"]': "must be a JSON object",
        '{"X-A": 5}': "must be a JSON object",
        '{"X-A": "s3cret", "x-a": "s3cret"}': "$MLRET_CHROMA_HEADERS x-a is given twice",
        '{"bad name": "s3cret"}': "'bad name' is not an HTTP header name",
    }.items():
        result = CliRunner(env={"MLRET_CHROMA_HEADERS": value}).invoke(app, ["check", "--host", HOST])
        assert result.exit_code == 1 and message in result.stderr and "s3cret" not in result.stderr, (value, result.stderr)
    result = CliRunner(env={"MLRET_CHROMA_HEADERS": '{"X-A": "b"}'}).invoke(app, ["check", "--db", str(tmp_path / "db")])
    assert result.exit_code == 1 and "$MLRET_CHROMA_HEADERS needs --host" in result.stderr


def test_cli_headers_from_the_environment_reach_the_server_unless_header_is_given(chroma_server_address,  # noqa: F811
                                                                                   name):
    proxy = ServerProxy(chroma_server_address)
    runner = CliRunner(env={"MLRET_CHROMA_HEADERS": '{"X-Team": "search", "X-Trace": "a=b"}'})
    try:
        where = ["--host", HOST, "--port", str(proxy.port), "--collection", name]
        result = runner.invoke(app, ["check", *where])
        assert result.exit_code == 1 and f"has no collection '{name}'" in result.stderr
        heads = proxy.requests()
        assert heads and all("\r\nx-team: search" in h and "\r\nx-trace: a=b" in h for h in heads)
        result = runner.invoke(app, ["check", *where, "--header", "X-Other=1"])  # --header replaces the variable
        assert result.exit_code == 1
        later = proxy.requests()[len(heads):]
        assert later and all("\r\nx-other: 1" in h and "x-team" not in h for h in later)
    finally:
        proxy.close()


def test_cli_header_and_ssl_reach_the_server(chroma_server_address, name):  # noqa: F811
    host, port = chroma_server_address
    proxy = ServerProxy(chroma_server_address)
    try:
        result = _cli("check", "--host", HOST, "--port", str(proxy.port), "--collection", name,
                      "--header", "X-Team=search", "--header", "X-Trace=a=b")
        assert result.exit_code == 1 and f"has no collection '{name}'" in result.stderr
        heads = proxy.requests()
        assert heads and all("\r\nx-team: search" in h and "\r\nx-trace: a=b" in h for h in heads)
    finally:
        proxy.close()
    result = _cli("query", "hi", "--host", host, "--port", str(port), "--ssl")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"error: the TLS handshake with the Chroma server at {host}:{port} failed")
    result = _cli("query", "hi", "--host", host, "--port", str(port), "--tenant", "nope")
    assert result.exit_code == 1 and "has no tenant 'nope'" in result.stderr
