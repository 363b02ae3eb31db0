"""The zeo-server crate against real ZODB 6 / ZEO 6 clients: `zeoraid serve -C`
with a generated config over an embedded FileStorage, and unmodified
`ZEO.ClientStorage` + `ZODB.DB` talking to it."""
import json
import socket
import struct
import threading
import time

import pytest
import transaction
import ZODB
import ZODB.POSException
from BTrees.Length import Length
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage


def client(server, **kw):
    kw.setdefault("wait_timeout", 20)
    # sync() pings the server, so a new transaction has seen every invalidation
    # of commits that finished before it (invalidations are asynchronous).
    kw.setdefault("server_sync", True)
    return ClientStorage(server.addr, **kw)


def database(server, **kw):
    return ZODB.DB(client(server, **kw))


def test_commit_and_read_back(zeo_server):
    server = zeo_server()
    db = database(server)
    with db.transaction("first") as conn:
        conn.root()["x"] = PersistentMapping(v=1)
    db.close()
    db = database(server)
    with db.transaction() as conn:
        assert conn.root()["x"]["v"] == 1
    assert db.storage._info["name"].endswith("Data.fs")
    assert db.storage.supportsUndo()
    db.close()


@pytest.mark.parametrize("zeo_options", ["", "  worker-threads 1\n"],
                         ids=["threads-per-cpu", "one-thread"])
def test_two_clients_see_each_others_commits(zeo_server, zeo_options):
    server = zeo_server(zeo_options=zeo_options)
    assert ("worker threads 1" in server.log()) == bool(zeo_options)
    db1, db2 = database(server), database(server)
    with db1.transaction() as conn:
        conn.root()["counter"] = PersistentMapping(n=0)
    c2 = db2.open()
    # Opening a connection does not sync: its view holds the invalidations
    # client 2 has processed so far, which may not yet include db1's commit
    # (ZEO sends them asynchronously). begin() syncs (server_sync pings).
    c2.transaction_manager.begin()
    assert c2.root()["counter"]["n"] == 0
    transaction.commit()
    for i in range(1, 4):
        with db1.transaction() as conn:
            conn.root()["counter"]["n"] = i
        # The invalidation reaches client 2 asynchronously.
        deadline = time.time() + 10
        while True:
            c2.transaction_manager.begin()
            if c2.root()["counter"]["n"] == i:
                break
            assert time.time() < deadline, "invalidation never arrived"
            time.sleep(0.02)
    c2.close()
    db1.close()
    db2.close()


def test_conflict_resolved_by_the_client(zeo_server):
    server = zeo_server()
    db1, db2 = database(server), database(server)
    with db1.transaction() as conn:
        conn.root()["len"] = Length(0)
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db1.open(tm1), db2.open(tm2)
    # Opening a connection does not sync; begin() does (server_sync pings), so
    # both views include the commit above before the race starts.
    tm1.begin()
    tm2.begin()
    c1.root()["len"].change(1)
    c2.root()["len"].change(5)
    tm1.commit()
    tm2.commit()  # conflicts on the server, resolved by client 2, re-voted
    c1.close()
    c2.close()
    db3 = database(server)
    with db3.transaction() as conn:
        assert conn.root()["len"]() == 6
    db1.close()
    db2.close()
    db3.close()


def test_unresolvable_conflict_raises(zeo_server):
    server = zeo_server()
    db1, db2 = database(server), database(server)
    with db1.transaction() as conn:
        conn.root()["m"] = PersistentMapping(v=0)
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db1.open(tm1), db2.open(tm2)
    # Opening a connection does not sync; begin() does (server_sync pings), so
    # both views include the commit above before the race starts.
    tm1.begin()
    tm2.begin()
    c1.root()["m"]["v"] = 1
    c2.root()["m"]["v"] = 2
    tm1.commit()
    with pytest.raises(ZODB.POSException.ConflictError):
        tm2.commit()
    tm2.abort()
    # The loser can retry and win.
    c2.root()["m"]["v"] = 3
    tm2.commit()
    c1.close()
    c2.close()
    db1.close()
    db2.close()


def test_undo(zeo_server):
    server = zeo_server()
    db = database(server)
    with db.transaction() as conn:
        conn.root()["v"] = 1
    with db.transaction("to be undone") as conn:
        conn.root()["v"] = 2
    log = db.storage.undoLog(0, 10)
    assert log[0]["description"] == b"to be undone"
    assert set(log[0]) >= {"id", "time", "user_name", "description", "size"}
    assert db.undoLog(0, 10)[0]["description"] == "to be undone"  # DB decodes
    info = db.storage.undoInfo(0, 10, {"description": b"to be undone"})
    assert [e["id"] for e in info] == [log[0]["id"]]
    db.undo(log[0]["id"])
    transaction.commit()
    with db.transaction() as conn:
        assert conn.root()["v"] == 1
    db.close()


def test_history_and_extension(zeo_server):
    server = zeo_server()
    db = database(server)
    for i in range(3):
        with db.transaction() as conn:
            conn.root()["v"] = i
            conn.transaction_manager.get().setExtendedInfo("step", i)
    storage = db.storage
    h = storage.history(b"\0" * 8, 5)
    assert len(h) == 4  # 3 commits + the root's creation
    assert h[0]["step"] == 2
    assert set(h[0]) >= {"time", "user_name", "description", "tid", "size"}
    assert h[0]["tid"] > h[1]["tid"]
    db.close()


def test_iterator(zeo_server):
    server = zeo_server()
    db = database(server)
    with db.transaction("one") as conn:
        conn.root()["a"] = PersistentMapping()
    with db.transaction("two") as conn:
        conn.root()["a"]["b"] = 1
    # Records must be read while the transaction is the iterator's current one
    # (as with ZEO: the server drops an exhausted iterator).
    seen = [(t.tid, t.description, t.status, list(t)) for t in db.storage.iterator()]
    assert [d for _, d, _, _ in seen][-2:] == [b"one", b"two"]
    tid, _, status, records = seen[-1]
    assert status == " "
    assert len(records) == 1 and records[0].data and records[0].tid == tid
    start = seen[1][0]
    assert [t.tid for t in db.storage.iterator(start)] == [t for t, _, _, _ in seen[1:]]
    # record_iternext walks the current records.
    oid, tid, data, nxt = db.storage.record_iternext()
    assert oid == b"\0" * 8 and data
    db.close()


def test_pack(zeo_server):
    server = zeo_server()
    db = database(server)
    for i in range(5):
        with db.transaction() as conn:
            conn.root()["v"] = i
    before = len(db.storage.history(b"\0" * 8, 100))
    time.sleep(0.05)
    db.pack()
    after = len(db.storage.history(b"\0" * 8, 100))
    assert after < before
    with db.transaction() as conn:
        assert conn.root()["v"] == 4
    db.close()


def test_cache_verification_after_reconnect(zeo_server, tmp_path):
    server = zeo_server()
    kw = dict(client="verify", var=str(tmp_path))
    db = database(server, **kw)
    with db.transaction() as conn:
        conn.root()["v"] = 1
    db.close()
    other = database(server)
    with other.transaction() as conn:
        conn.root()["v"] = 2
    other.close()
    # The persistent cache is behind: getInvalidations brings it up to date.
    db = database(server, **kw)
    with db.transaction() as conn:
        assert conn.root()["v"] == 2
    db.close()


def test_blobs(zeo_server, tmp_path):
    from ZODB.blob import Blob
    server = zeo_server()
    db1 = database(server, blob_dir=str(tmp_path / "c1"))
    payload = b"hello blob " * 20000  # several 59000-byte chunks
    with db1.transaction() as conn:
        conn.root()["b"] = Blob(payload)
    db1.close()
    db2 = database(server, blob_dir=str(tmp_path / "c2"))
    with db2.transaction() as conn:
        with conn.root()["b"].open() as f:
            assert f.read() == payload
    db2.close()


def test_msgpack_server(zeo_server):
    server = zeo_server(zeo_options="  msgpack true\n")
    db = database(server)
    with db.transaction() as conn:
        conn.root()["m"] = PersistentMapping(v="msgpack")
    db.close()
    db = database(server)
    with db.transaction() as conn:
        assert conn.root()["m"]["v"] == "msgpack"
    assert db.storage.history(b"\0" * 8)[0]["tid"]
    db.close()


def test_read_only_server(zeo_server):
    server = zeo_server()
    db = database(server)
    with db.transaction() as conn:
        conn.root()["v"] = 1
    db.close()
    server.stop()
    ro = zeo_server(zeo_options="  read-only true\n", workdir=server.workdir)
    db = database(ro, read_only_fallback=True)
    assert db.storage.isReadOnly()
    conn = db.open()
    assert conn.root()["v"] == 1
    conn.root()["v"] = 2
    with pytest.raises(ZODB.POSException.ReadOnlyError):
        transaction.commit()
    transaction.abort()
    conn.close()
    db.close()


def read_frame(sock):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    head = exactly(4)
    if head is None:
        return None
    return exactly(struct.unpack(">I", head)[0])


def write_frame(sock, payload):
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def test_ruok(zeo_server):
    server = zeo_server()
    with socket.create_connection(server.addr, timeout=10) as s:
        assert read_frame(s) == b"Z5"
        write_frame(s, b"ruok")
        status = json.loads(read_frame(s))
        assert read_frame(s) is None
    assert set(status) == {"1"}
    assert set(status["1"]) == {
        "connections", "loads", "stores", "commits", "aborts", "active_txns",
        "lock_time", "conflicts", "conflicts_resolved", "start", "waiting",
        "timeout-thread-is-alive", "last-transaction"}


def test_server_status_and_ping(zeo_server):
    server = zeo_server()
    storage = client(server)
    storage.ping()
    status = storage.server_status()
    assert status["connections"] == 1
    assert status["timeout-thread-is-alive"] == "stub"
    storage.close()


@pytest.mark.parametrize("bad", ["garbage", "oversized", "unknown_method", "bad_handshake"])
def test_bad_input_closes_only_that_connection(zeo_server, bad):
    from ZEO.asyncio.marshal import encoder
    server = zeo_server()
    db = database(server)
    with db.transaction() as conn:
        conn.root()["v"] = 1
    with socket.create_connection(server.addr, timeout=10) as s:
        assert read_frame(s) == b"Z5"
        if bad == "bad_handshake":
            write_frame(s, b"Z4")
        else:
            write_frame(s, b"Z5")
            encode = encoder(b"Z5")
            write_frame(s, encode(1, False, "register", ("1", False)))
            assert read_frame(s) is not None
            if bad == "garbage":
                write_frame(s, b"\x80\x03 this is not a pickle")
            elif bad == "oversized":
                s.sendall(struct.pack(">I", 0xFFFFFFF0) + b"xxxx")
            else:
                write_frame(s, encode(2, False, "no_such_method", ()))
        assert read_frame(s) is None  # the server closed this connection
    with db.transaction() as conn:
        assert conn.root()["v"] == 1
        conn.root()["v"] = 2
    db.close()


def test_sigterm_stops_cleanly(zeo_server):
    server = zeo_server()
    db = database(server)
    with db.transaction() as conn:
        conn.root()["v"] = 1
    db.close()
    assert server.stop() == 0
    assert "server stopped" in server.log()


def test_unix_socket(zeoraid_bin, tmp_path):
    import subprocess
    sock = tmp_path / "zeo.sock"
    config = tmp_path / "zeo.conf"
    config.write_text(
        "<zeo>\n  address %s\n</zeo>\n<filestorage 1>\n  path %s\n</filestorage>\n"
        % (sock, tmp_path / "Data.fs"))
    proc = subprocess.Popen([zeoraid_bin, "serve", "-C", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not sock.exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        db = ZODB.DB(ClientStorage(str(sock), wait_timeout=20))
        with db.transaction() as conn:
            conn.root()["unix"] = True
        db.close()
    finally:
        proc.terminate()
        proc.wait(20)


def make_certs(d):
    """A CA, a server certificate (localhost/127.0.0.1) and a client certificate
    signed by it, made with the openssl command line tool."""
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line tool is not installed")
    d.mkdir(exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=zeoraid test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, usage, san in [("server", "serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                             ("client", "clientAuth", "subjectAltName=DNS:client")]:
        (d / (name + ".ext")).write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=%s\n%s\n" % (usage, san))
        run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
    return d


def tls_server(zeo_server, certs):
    return zeo_server(zeo_options=(
        "  <ssl>\n    certificate %s\n    key %s\n    authenticate %s\n  </ssl>\n"
        % (certs / "server.pem", certs / "server.key", certs / "ca.pem")))


def client_context(certs, with_cert=True):
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs / "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    return ctx


def test_tls_with_client_certificate(zeo_server, tmp_path):
    certs = make_certs(tmp_path / "certs")
    server = tls_server(zeo_server, certs)
    db = database(server, ssl=client_context(certs), ssl_server_hostname="localhost")
    with db.transaction() as conn:
        conn.root()["secret"] = "over TLS"
    db.close()
    db = database(server, ssl=client_context(certs), ssl_server_hostname="localhost")
    with db.transaction() as conn:
        assert conn.root()["secret"] == "over TLS"
    db.close()


@pytest.mark.parametrize("over_tls", [False, True], ids=["plain", "tls"])
def test_an_invalidation_reaches_a_client_that_sends_nothing(zeo_server, tmp_path, over_tls):
    """A commit writes the other clients' invalidations itself when their
    output is idle (docs/zeo-server.md): the frame must leave at once, also
    through TLS, and not wait in a buffer for the client's next request."""
    if over_tls:
        certs = make_certs(tmp_path / "certs")
        server = tls_server(zeo_server, certs)
        tls = dict(ssl=client_context(certs), ssl_server_hostname="localhost")
    else:
        server, tls = zeo_server(), {}
    idle = client(server, server_sync=False, **tls)
    db = database(server, **tls)
    try:
        for i in range(3):
            with db.transaction() as conn:
                conn.root()["n"] = i
            committed = db.storage.lastTransaction()
            deadline = time.time() + 10
            # lastTransaction() answers from the client's cache, which only
            # the server's invalidateTransaction moves: no request is sent.
            while idle.lastTransaction() != committed:
                assert time.time() < deadline, "the invalidation never arrived"
                time.sleep(0.01)
    finally:
        db.close()
        idle.close()


def test_tls_refuses_clients_without_certificate_and_plain_clients(zeo_server, tmp_path):
    import ssl
    certs = make_certs(tmp_path / "certs")
    server = tls_server(zeo_server, certs)
    # No client certificate: the server refuses the handshake.
    ctx = client_context(certs, with_cert=False)
    with socket.create_connection(server.addr, timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                frame = read_frame(s)
                if frame is None:
                    raise ConnectionError("closed")
    # A plain client gets no ZEO handshake.
    with socket.create_connection(server.addr, timeout=10) as s:
        write_frame(s, b"Z5")
        try:
            frame = read_frame(s)
        except OSError:
            frame = None
        assert frame != b"Z5"
    # A proper client still works.
    db = database(server, ssl=client_context(certs), ssl_server_hostname="localhost")
    with db.transaction() as conn:
        conn.root()["ok"] = True
    db.close()


def test_tls_with_zeos_own_self_signed_test_certificates(zeo_server, tmp_path):
    """ZEO's own test certificates are self-signed CA:TRUE certificates, each used
    as its peer's only trust anchor (ZEO.tests.testssl.server_config and
    client_ssl()). OpenSSL accepts that; zeoraid accepts it too, and still
    refuses a client presenting another certificate."""
    import ssl
    from ZEO.tests import testssl
    server = zeo_server(zeo_options=(
        "  <ssl>\n    certificate %s\n    key %s\n    authenticate %s\n  </ssl>\n"
        % (testssl.server_cert, testssl.server_key, testssl.client_cert)))
    db = database(server, ssl=testssl.client_ssl(), ssl_server_hostname="zodb.org")
    with db.transaction() as conn:
        conn.root()["pinned"] = "self-signed"
    db.close()
    # The server's certificate is not a trusted client certificate.
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=testssl.server_cert)
    ctx.check_hostname = False
    ctx.load_cert_chain(testssl.serverpw_cert, testssl.serverpw_key, password="1234")
    with socket.create_connection(server.addr, timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw) as s:
                if read_frame(s) is None:
                    raise ConnectionError("closed")
    db = database(server, ssl=testssl.client_ssl(), ssl_server_hostname="zodb.org")
    with db.transaction() as conn:
        assert conn.root()["pinned"] == "self-signed"
    db.close()


def test_zeo_single_example_config_is_served(zeoraid_bin, tmp_path):
    """examples/zeo-single.conf's shape (one <filestorage> with blobs) really serves."""
    import conftest
    import subprocess
    text = (conftest.ROOT / "examples" / "zeo-single.conf").read_text()
    port = conftest.free_port()
    text = text.replace("127.0.0.1:8100", "127.0.0.1:%d" % port)
    (tmp_path / "zeo.conf").write_text(text)
    proc = subprocess.Popen([zeoraid_bin, "serve", "-C", "zeo.conf"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        conftest._wait_listening(proc, "127.0.0.1", port, "/dev/null")
        db = ZODB.DB(ClientStorage(("127.0.0.1", port), wait_timeout=20))
        with db.transaction() as conn:
            conn.root()["single"] = 1
        db.close()
        assert (tmp_path / "var" / "Data.fs").exists()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert b"ZEO address  127.0.0.1:%d" % port in out


def test_shared_blob_dir(zeo_server, tmp_path):
    """A client sharing the server's blob directory sends storeBlobShared."""
    from ZODB.blob import Blob
    server = zeo_server()
    shared = str(server.workdir / "blobs")
    db = database(server, blob_dir=shared, shared_blob_dir=True)
    with db.transaction() as conn:
        conn.root()["b"] = Blob(b"shared blob data")
    db.close()
    other = database(server, blob_dir=str(tmp_path / "cache"))
    with other.transaction() as conn:
        with conn.root()["b"].open() as f:
            assert f.read() == b"shared blob data"
    other.close()


def test_transaction_timeout_from_config(zeo_server):
    """A client holding the commit lock past transaction-timeout is disconnected
    and its transaction aborted; others commit."""
    from ZEO.asyncio.marshal import encoder
    server = zeo_server(zeo_options="  transaction-timeout 1\n")
    encode = encoder(b"Z5")
    with socket.create_connection(server.addr, timeout=10) as s:
        assert read_frame(s) == b"Z5"
        write_frame(s, b"Z5")
        write_frame(s, encode(1, False, "register", ("1", False)))
        read_frame(s)
        write_frame(s, encode(0, True, "tpc_begin", (42, b"", b"", {}, None, " ")))
        write_frame(s, encode(0, True, "storea", (b"\0" * 7 + b"\x09", b"\0" * 8, b"x", 42)))
        write_frame(s, encode(2, False, "vote", (42,)))
        read_frame(s)  # the vote's reply; now we hold the lock
        started = time.time()
        while read_frame(s) is not None:
            pass
        assert time.time() - started < 10
    db = database(server)
    with db.transaction() as conn:
        conn.root()["after"] = 1
    db.close()
    assert "Transaction timeout" in server.log()
