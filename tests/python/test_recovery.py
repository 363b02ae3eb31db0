"""Online recovery, verify and reload against a real `zeoraid serve`.

A `<raidstorage 1>` over embedded `<filestorage>` backends, ZODB clients
(ClientStorage) in 4 processes committing all along: a backend added to the
configuration joins through `zeoraid reload`, `zeoraid recover b --wait`
rebuilds it with the full history while the clients write, `zeoraid status`
turns optimal, `zeoraid verify` finds the backends identical, and after the
server stops Python's own FileStorage reads both Data.fs files as the same
database (transactions, records, blobs, undo log). Refused reloads change
nothing. `ZEORAID_STRESS=1` makes the load and the history bigger.
"""
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage
from ZODB.blob import Blob

from conftest import _wait_listening, free_port

STRESS = os.environ.get("ZEORAID_STRESS") == "1"
HISTORY = 400 if STRESS else 60
WRITERS = 4


def raid_config(path, port, admin_port, backends, extra=""):
    """Writes a config with `<raidstorage 1>` over `backends` (name, dir)."""
    sections = "".join(
        "  <filestorage %s>\n    path %s\n    blob-dir %s\n  </filestorage>\n"
        % (name, d / "Data.fs", d / "blobs") for name, d in backends)
    path.write_text(
        "<zeo>\n  address 127.0.0.1:%d\n  admin-address 127.0.0.1:%d\n</zeo>\n"
        "<raidstorage 1>\n%s%s</raidstorage>\n" % (port, admin_port, extra, sections))


WRITER = textwrap.dedent("""
    import os, sys, time, transaction, ZODB
    from ZEO.ClientStorage import ClientStorage
    from ZODB.POSException import ConflictError
    port, key, stop, blobs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    db = ZODB.DB(ClientStorage(("127.0.0.1", port), blob_dir=blobs, wait_timeout=30))
    conn = db.open()
    n = 0
    while not os.path.exists(stop):
        try:
            m = conn.root()[key]
            m["n"] = n
            m["data"] = "x" * (50 + n % 200)
            transaction.get().note("%s %d" % (key, n))
            transaction.commit()
            n += 1
        except ConflictError:
            transaction.abort()
        time.sleep(0.005)
    print(n)
    conn.close(); db.close()
""")


@pytest.fixture
def raid(zeoraid_bin, spawn, tmp_path):
    """`raid(backends)` starts `zeoraid serve` on a RAID config; returns a
    namespace with config, port, stop()."""
    class Server:
        pass

    servers = []

    def start(backends, extra=""):
        s = Server()
        s.port, s.admin_port = free_port(), free_port()
        s.config = tmp_path / "zeoraid.conf"
        raid_config(s.config, s.port, s.admin_port, backends, extra)
        s.log_path = tmp_path / "server.log"
        log = open(s.log_path, "ab")
        env = dict(os.environ, ZEORAID_LOG="info")
        s.proc = spawn([zeoraid_bin, "serve", "-C", str(s.config)],
                       stdout=log, stderr=log, cwd=str(tmp_path), env=env)
        log.close()
        _wait_listening(s.proc, "127.0.0.1", s.port, s.log_path)
        _wait_listening(s.proc, "127.0.0.1", s.admin_port, s.log_path)

        def stop():
            if s.proc.poll() is None:
                s.proc.terminate()
                s.proc.wait(30)
        s.stop = stop
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def fs_view(path, blob_dir):
    """Everything Python's FileStorage says about a Data.fs."""
    fs = ZODB.FileStorage.FileStorage(str(path), read_only=True, blob_dir=str(blob_dir))
    try:
        txns = []
        for t in fs.iterator():
            records = []
            for r in t:
                blob = None
                try:
                    with open(fs.loadBlob(r.oid, r.tid), "rb") as f:
                        blob = f.read()
                except Exception:
                    pass
                records.append((r.oid, r.tid, r.data, r.data_txn, blob))
            txns.append((t.tid, t.status, t.user, t.description, t.extension, records))
        undo = [(d["id"], d["description"]) for d in fs.undoLog(0, 100000)]
        return txns, undo, fs.lastTransaction()
    finally:
        fs.close()


def test_recover_an_added_backend_while_clients_commit(raid, zeoraid, spawn, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    server = raid([("a", a)])
    cfg = str(server.config)

    # A history: objects, a blob, an undo (back-pointers).
    client_blobs = tmp_path / "client-blobs"
    db = ZODB.DB(ClientStorage(("127.0.0.1", server.port), blob_dir=str(client_blobs)))
    conn = db.open()
    root = conn.root()
    for i in range(WRITERS):
        root["w%d" % i] = PersistentMapping()
    root["blob"] = Blob(b"blob content " * 100)
    transaction.commit()
    for i in range(HISTORY):
        root["counter"] = i
        transaction.get().note("history %d" % i)
        transaction.commit()
    db.undo(db.undoLog(0, 1)[0]["id"])
    transaction.commit()
    conn.close()
    db.close()

    # b joins through reload: degraded "added by controller".
    raid_config(server.config, server.port, server.admin_port, [("a", a), ("b", b)])
    r = zeoraid("reload", "-C", cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "added b" in r.stdout
    r = zeoraid("details", "-C", cfg)
    assert "added by controller" in r.stdout, r.stdout
    assert zeoraid("status", "-C", cfg).returncode == 2

    # Refused reloads change nothing.
    raid_config(server.config, server.port, server.admin_port, [("b", b)])
    r = zeoraid("reload", "-C", cfg)
    assert r.returncode == 2 and "no optimal backend left" in r.stderr, r.stderr
    raid_config(server.config, server.port + 1, server.admin_port, [("a", a), ("b", b)])
    r = zeoraid("reload", "-C", cfg)
    assert r.returncode == 2 and "address changed" in r.stderr, r.stderr
    server.config.write_text("<zeo>\n  address nonsense\n")
    r = zeoraid("reload", "-C", cfg)
    assert r.returncode != 0 and r.stderr, r.stderr
    raid_config(server.config, server.port, server.admin_port, [("a", a), ("b", b)])
    r = zeoraid("details", "-C", cfg)
    assert "a " in r.stdout and "added by controller" in r.stdout, r.stdout

    # Clients keep committing through the recovery.
    stop = tmp_path / "stop"
    writers = []
    for i in range(WRITERS):
        writers.append(spawn(
            [sys.executable, "-c", WRITER, str(server.port), "w%d" % i, str(stop),
             str(tmp_path / ("wblobs%d" % i))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    time.sleep(1.0)
    r = zeoraid("recover", "b", "-C", cfg, "--wait", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "recovering" in r.stdout and r.stdout.strip().endswith("b: optimal"), r.stdout
    assert zeoraid("status", "-C", cfg).returncode == 0
    time.sleep(0.5)  # commits after the switch-over reach both
    r = zeoraid("verify", "-C", cfg, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("identical: "), r.stdout

    stop.write_text("")
    counts = []
    for w in writers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        counts.append(int(out.strip()))
    assert all(n > 0 for n in counts), counts
    r = zeoraid("verify", "-C", cfg, timeout=120)
    assert r.returncode == 0 and "identical" in r.stdout, r.stdout + r.stderr
    # A second recovery of an optimal backend is refused with the reason.
    r = zeoraid("recover", "b", "-C", cfg)
    assert r.returncode == 2 and "is optimal" in r.stderr, r.stderr
    server.stop()

    # Python's FileStorage sees the same database in both files.
    va, vb = fs_view(a / "Data.fs", a / "blobs"), fs_view(b / "Data.fs", b / "blobs")
    assert len(va[0]) >= HISTORY + sum(counts)
    assert va[0] == vb[0]
    assert va[1] == vb[1]
    assert va[2] == vb[2]
    assert any(rec[4] for t in vb[0] for rec in t[5]), "the blob was recovered"
    assert any(rec[3] for t in vb[0] for rec in t[5]), "back-pointers were kept"


def test_recover_a_backend_whose_file_was_deleted(raid, zeoraid, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    server = raid([("a", a), ("b", b)])
    db = ZODB.DB(ClientStorage(("127.0.0.1", server.port), blob_dir=str(tmp_path / "cb")))
    with db.transaction() as conn:
        conn.root()["x"] = 1
    for i in range(20):
        with db.transaction() as conn:
            conn.root()["x"] = i
    db.close()
    server.stop()
    (b / "Data.fs").unlink()
    for p in b.glob("Data.fs.*"):
        p.unlink()
    server = raid([("a", a), ("b", b)])
    cfg = str(server.config)
    r = zeoraid("details", "-C", cfg)
    assert "missing transactions" in r.stdout, r.stdout
    r = zeoraid("recover", "b", "-C", cfg, "--wait", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = zeoraid("verify", "-C", cfg)
    # The root, its first state, 20 updates.
    assert r.returncode == 0 and "identical: 22 transactions" in r.stdout, r.stdout + r.stderr
    server.stop()
    assert fs_view(a / "Data.fs", a / "blobs") == fs_view(b / "Data.fs", b / "blobs")
