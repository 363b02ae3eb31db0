"""Online recovery, verify and reload against a real `zeoraid serve`.

A `<raidstorage 1>` over embedded `<filestorage>` backends, ZODB clients
(ClientStorage) in 4 processes committing all along: a backend added to the
configuration joins through `zeoraid reload`, `zeoraid recover b --wait`
rebuilds it with the full history while the clients write, `zeoraid status`
turns optimal, `zeoraid verify` finds the backends identical, and after the
server stops Python's own FileStorage reads both Data.fs files as the same
database (transactions, records, blobs, undo log). Refused reloads change
nothing. `ZEORAID_STRESS=1` makes the load and the history bigger.

Then with real `runzeo` backends (raidprocs.py): a fresh runzeo recovered from
another with blobs, a stale one that gets only the missing tail, and faults
half-way through a recovery (the runzeo target or the runzeo source SIGKILLed,
an embedded target's disk full, a runzeo killed between vote and finish), each
while 4 client processes commit without an error.
"""
import os
import pathlib
import re
import shutil
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
from raidprocs import (
    RaidServer, Runzeo, Writers, client_db, filestorage_section, keys_in_data_fs,
    last_tid_of_data_fs, runzeo_section, wait_for)

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


def same_records(view):
    """`fs_view` with each transaction's records reduced to the last one per oid,
    sorted by oid: what every read sees. (A blob stored through ZEO makes
    Python's FileStorage write a plain record and the blob record for the oid,
    in an order that depends on the ZEO server's replay of the transaction; a
    recovery restores the last one.)"""
    txns, undo, last = view
    out = []
    for t in txns:
        by_oid = {rec[0]: rec for rec in t[5]}
        out.append(t[:5] + ([by_oid[oid] for oid in sorted(by_oid)],))
    return out, undo, last


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


# ------------------------------------------------------------ runzeo backends, faults
#
# The rest of this file runs the RAID over real `runzeo` backends (raidprocs.py)
# and embedded ones, with 4 client processes (raidprocs.Writers) committing all
# along, and faults injected mid-recovery. A recovery is made slow enough to be
# caught half-way with `recovery-rate`: the history is a few MB written up front
# by Python's FileStorage, the rate limit copies it in a few seconds, and the
# writers (pausing between commits) stay well below it so the catch-up converges.

RATE = 1 << 20            # recovery-rate for the fault tests: 1 MB/s
BIG = 20_000              # bytes per object of the up-front history
BIG_TXNS = 100            # transactions of the up-front history (~2 MB)
WRITER_PAUSE = 0.05       # seconds each writer waits between commits
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def python_history(path, transactions=BIG_TXNS, size=BIG, blob_dir=None):
    """Writes a history with Python's FileStorage into a new Data.fs at `path`:
    `transactions` transactions each rewriting one of 10 objects with `size`
    bytes. Returns the number of transactions in the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(
        str(path), blob_dir=None if blob_dir is None else str(blob_dir)))
    try:
        with db.transaction() as conn:
            conn.root()["objs"] = [PersistentMapping() for _ in range(10)]
        for i in range(transactions):
            with db.transaction("history %d" % i) as conn:
                conn.root()["objs"][i % 10]["data"] = b"%06d" % i + b"h" * size
        return len(list(db.storage.iterator()))
    finally:
        db.close()


def recovery_reports(raid):
    """[(common, copied)] of every finished recovery in the server's log."""
    return [(int(m.group(1)), int(m.group(2))) for m in re.finditer(
        r"recovery finished.*?common=(\d+) copied=(\d+)", ANSI.sub("", raid.log()))]


def recover_until(raid, name, fraction, timeout=60):
    """Starts recovering `name` (`zeoraid recover`, no wait) and waits until its
    progress has copied `fraction` of the bytes; returns that progress."""
    r = raid.cli("recover", name)
    assert r.returncode == 0, r.stdout + r.stderr

    def far_enough():
        b = raid.backend(name)
        assert b["state"] == "recovering", b
        p = b.get("progress") or {}
        total = p.get("bytes_total")
        return p if total and p["bytes"] >= fraction * total else None
    return wait_for(far_enough, timeout, "%s %d%% recovered" % (name, fraction * 100))


def wait_degraded(raid, name, reason_starts, timeout=60):
    """Waits until `name` is degraded with a reason starting `reason_starts`."""
    def degraded():
        state, reason = raid.states()[name]
        if state == "degraded":
            assert reason.startswith(reason_starts), reason
            return reason
        return None
    return wait_for(degraded, timeout, "%s degraded" % name)


def recover_wait(raid, name, timeout=120):
    r = raid.cli("recover", name, "--wait", timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("%s: optimal" % name), r.stdout


def restart(raid, server):
    """Starts `server` (a Runzeo) again and waits until the RAID's connection to
    it is back (its log says `reconnected`): a recovery started before that
    fails at once with `cannot connect`."""
    marker = "reconnected to ZEO server server=%s:%d" % (server.host, server.port)
    before = ANSI.sub("", raid.log()).count(marker)
    server.start()
    wait_for(lambda: ANSI.sub("", raid.log()).count(marker) > before, 30,
             "zeoraid reconnected to %s" % (server.addr,))


# The reason a recovery gives for a runzeo that was killed between the vote and
# the finish of a transaction: Python's FileStorage then reports that
# transaction's tid as its last one until it is restarted once more.
UNFINISHED = "a transaction it voted was never finished"


def recover_restarted(raid, name, server):
    """`recover NAME --wait` for a runzeo backend that was killed and restarted;
    when the recovery says it was killed between vote and finish
    (`UNFINISHED`), restarts it once more as the reason says and recovers again.
    Returns whether that was needed."""
    r = raid.cli("recover", name, "--wait", timeout=120)
    if r.returncode != 0 and UNFINISHED in r.stderr:
        assert "recovery failed: target %s: " % name in r.stderr, r.stderr
        assert server.stop() == 0
        restart(raid, server)
        recover_wait(raid, name)
        return True
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("%s: optimal" % name), r.stdout
    return False


def verify_identical(raid, names):
    r = raid.cli("verify", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("identical: ") and r.stdout.rstrip().endswith(
        " on " + ", ".join(names)), r.stdout
    return int(r.stdout.split()[1])


def stop_writers_cleanly(writers):
    codes, stderr = writers.stop()
    assert writers.errors() == "", "clients saw errors:\n" + writers.errors()
    assert codes == [0] * len(codes), stderr


@pytest.fixture
def runzeos(spawn, tmp_path):
    """`runzeos(name, blobs=False, start=True)`: a Runzeo under tmp_path/name;
    every one is stopped at teardown (and SIGKILLed by `spawn` if need be)."""
    made = []

    def make(name, blobs=False, start=True):
        server = Runzeo(spawn, tmp_path / name, blobs=blobs)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()


def test_recover_a_fresh_runzeo_backend_while_clients_commit(runzeos, zeoraid_bin, spawn,
                                                             tmp_path):
    """A RAID over two runzeo backends with blobs: `a` has a history (objects,
    blobs, an undo), `b` is a new runzeo on an empty Data.fs. `b` is recovered
    while 4 client processes commit: optimal, `verify` identical, and after
    everything stopped Python's FileStorage reads the same database from both
    Data.fs files (transactions, per oid the last record of each with its blob,
    undo log, last tid: `same_records`) and every acknowledged commit."""
    a = runzeos("a", blobs=True)
    db = ZODB.DB(ClientStorage(a.addr, blob_dir=str(tmp_path / "cb"), wait_timeout=30))
    with db.transaction() as conn:
        conn.root()["blobs"] = [Blob(b"blob %d " % i * 2000) for i in range(3)]
    for i in range(HISTORY):
        with db.transaction("history %d" % i) as conn:
            conn.root()["counter"] = i
            if i % 20 == 0:
                with conn.root()["blobs"][i % 3].open("w") as f:
                    f.write(b"blob rewritten %d " % i * 1000)
    db.undo(db.undoLog(0, 1)[0]["id"])
    transaction.commit()
    db.close()
    b = runzeos("b", blobs=True)
    raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", [
        runzeo_section("a", a, "10s", "    blob-dir %s\n" % (tmp_path / "cache-a")),
        runzeo_section("b", b, "10s", "    blob-dir %s\n" % (tmp_path / "cache-b")),
    ], raid_options="  blob-dir %s\n" % (tmp_path / "raid-blobs")).start()
    assert raid.states()["b"] == ("degraded", "missing transactions")

    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS,
                      pause=WRITER_PAUSE)
    writers.wait_acks(20)
    recover_wait(raid, "b")
    assert raid.cli("status").returncode == 0
    at = writers.count()
    writers.wait_acks(at + 20)  # commits after the switch-over reach both
    verify_identical(raid, ["a", "b"])
    stop_writers_cleanly(writers)
    total = verify_identical(raid, ["a", "b"])
    assert raid.stop() == 0
    assert a.stop() == 0 and b.stop() == 0

    va, vb = fs_view(a.path, a.blob_dir), fs_view(b.path, b.blob_dir)
    assert len(va[0]) == len(vb[0]) == total >= HISTORY + writers.count()
    assert same_records(va) == same_records(vb)
    assert sum(1 for t in vb[0] for rec in t[5] if rec[4]) >= 3, "the blobs were recovered"
    assert keys_in_data_fs(b.path, writers.names) == writers.acked_keys()


def test_a_stale_runzeo_backend_gets_only_the_missing_tail(runzeos, zeoraid_bin, spawn,
                                                           tmp_path):
    """A runzeo backend down for a while misses K commits; after it is back,
    `recover` verifies the common prefix and copies exactly the K missing
    transactions: the progress (`details`) counts K to copy, the finished
    recovery reports K copied and the rest common."""
    b = runzeos("b")
    raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", [
        filestorage_section("a", tmp_path / "a" / "Data.fs"),
        runzeo_section("b", b, "10s"),
    ], raid_options="  recovery-rate 200KB\n").start()
    db = client_db(raid.addr)
    for i in range(HISTORY):
        with db.transaction("common %d" % i) as conn:
            conn.root()["small"] = i
    b.kill()
    missing = 12
    for i in range(missing):
        with db.transaction("missed %d" % i) as conn:
            conn.root()["big%d" % (i % 3)] = b"%06d" % i + b"m" * BIG
    assert raid.states()["b"][0] == "degraded"
    restart(raid, b)

    r = raid.cli("recover", "b")
    assert r.returncode == 0, r.stdout + r.stderr
    samples = []

    def optimal():
        state = raid.backend("b")
        progress = state.get("progress") or {}
        if state["state"] == "recovering" and progress.get("transactions_total") is not None:
            samples.append(progress)
        return state["state"] == "optimal"
    wait_for(optimal, 60, "b optimal")
    db.close()
    assert samples, "the paced recovery was never seen in progress"
    assert {p["transactions_total"] for p in samples} == {missing}, samples
    assert max(p["transactions"] for p in samples) <= missing
    total = verify_identical(raid, ["a", "b"])
    assert recovery_reports(raid) == [(total - missing, missing)]
    assert total - missing > HISTORY


def test_runzeo_target_killed_mid_recovery(runzeos, zeoraid_bin, spawn, tmp_path):
    """The target (a runzeo) is SIGKILLed half-way through its recovery: it is
    degraded with the reason, clients go on committing without an error; once
    restarted, a new `recover` resumes after what it already holds and brings
    it to optimal, `verify` identical. (Killed between the vote and the finish
    of a restore, it must be restarted once more first: `recover_restarted`;
    `test_runzeo_target_killed_between_vote_and_finish` makes that case
    deterministic.)"""
    python_history(tmp_path / "a" / "Data.fs")
    b = runzeos("b")
    raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", [
        filestorage_section("a", tmp_path / "a" / "Data.fs"),
        runzeo_section("b", b, "10s"),
    ], raid_options="  recovery-rate %d\n" % RATE).start()
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS,
                      pause=WRITER_PAUSE)
    writers.wait_acks(20)
    recover_until(raid, "b", 0.3)
    b.kill()
    reason = wait_degraded(raid, "b", "recovery failed: target b: ")
    assert raid.cli("status").stdout == "degraded\n"
    at = writers.count()
    writers.wait_acks(at + 40)
    assert writers.errors() == ""

    restart(raid, b)
    recover_restarted(raid, "b", b)
    (common, copied), = recovery_reports(raid)
    assert common > 0, "the second recovery resumed after what b held (%s)" % reason
    writers.wait_acks(writers.count() + 20)
    stop_writers_cleanly(writers)
    verify_identical(raid, ["a", "b"])
    assert raid.stop() == 0
    assert keys_in_data_fs(b.path, writers.names) == writers.acked_keys()


def test_source_killed_mid_recovery(runzeos, zeoraid_bin, spawn, tmp_path):
    """Three backends: the source of the recovery (`a`, a runzeo, first in
    configuration order) is SIGKILLed half-way through the recovery of `c`.
    The RAID stays up on `b` (clients commit without an error), `c` is degraded
    with the reason, `a` is degraded by the commits it missed. A new `recover c`
    copies from `b` and succeeds; `a`, restarted, is recovered too; `verify`
    finds all three identical."""
    history = tmp_path / "history" / "Data.fs"
    python_history(history)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(history, tmp_path / d / "Data.fs")
    a, c = runzeos("a"), runzeos("c")
    raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", [
        runzeo_section("a", a, "10s"),
        filestorage_section("b", tmp_path / "b" / "Data.fs"),
        runzeo_section("c", c, "10s"),
    ], raid_options="  recovery-rate %d\n" % RATE).start()
    assert raid.states() == {"a": ("optimal", None), "b": ("optimal", None),
                             "c": ("degraded", "missing transactions")}
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS,
                      pause=WRITER_PAUSE)
    writers.wait_acks(20)
    recover_until(raid, "c", 0.3)
    a.kill()
    wait_degraded(raid, "c", "recovery failed: source a: ")
    wait_degraded(raid, "a", "")
    assert raid.states()["b"] == ("optimal", None)
    at = writers.count()
    writers.wait_acks(at + 40)
    assert writers.errors() == ""

    restart(raid, a)
    recover_wait(raid, "c")
    recover_restarted(raid, "a", a)
    assert raid.cli("status").returncode == 0
    reports = recovery_reports(raid)
    assert len(reports) == 2 and all(common > 0 for common, _ in reports), reports
    writers.wait_acks(writers.count() + 20)
    stop_writers_cleanly(writers)
    verify_identical(raid, ["a", "b", "c"])
    assert raid.stop() == 0
    for server in (a, c):
        assert keys_in_data_fs(server.path, writers.names) == writers.acked_keys()


def test_embedded_target_whose_disk_fills_mid_recovery(zeoraid_bin, spawn, tmp_path):
    """An embedded target cannot be killed apart from the RAID process it lives
    in; its realistic mid-recovery failure is a full disk (here its `quota`,
    half the history). It is degraded with the reason while clients go on
    committing; after the operator gives it room (remove it, reload, add it back
    with a larger quota, reload) `recover` resumes after what it holds and
    succeeds, `verify` identical."""
    python_history(tmp_path / "a" / "Data.fs")
    a = filestorage_section("a", tmp_path / "a" / "Data.fs")

    def b(quota):
        return filestorage_section("b", tmp_path / "b" / "Data.fs", "    quota %s\n" % quota)
    raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", [a, b("1MB")]).start()
    config = raid.config_path.read_text()
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS,
                      pause=WRITER_PAUSE)
    writers.wait_acks(20)
    r = raid.cli("recover", "b")
    assert r.returncode == 0, r.stdout + r.stderr
    reason = wait_degraded(raid, "b", "recovery failed: target b: ")
    assert "quota" in reason, reason
    at = writers.count()
    writers.wait_acks(at + 40)
    assert writers.errors() == ""

    raid.config_path.write_text(config.replace(b("1MB"), ""))
    r = raid.cli("reload")
    assert r.returncode == 0, r.stdout + r.stderr
    raid.config_path.write_text(config.replace(b("1MB"), b("100MB")))
    r = raid.cli("reload")
    assert r.returncode == 0 and "added b" in r.stdout, r.stdout + r.stderr
    recover_wait(raid, "b")
    (common, copied), = recovery_reports(raid)
    assert common > BIG_TXNS // 4, "resumed after what b held, not from empty"
    writers.wait_acks(writers.count() + 20)
    stop_writers_cleanly(writers)
    verify_identical(raid, ["a", "b"])
    assert raid.stop() == 0


INTERRUPTED_COMMIT = textwrap.dedent("""
    import os, sys
    from ZODB.Connection import TransactionMetaData
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import z64
    path, tid, finish = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3] == "finish"
    fs = FileStorage(path)
    t = TransactionMetaData(description=b"interrupted")
    fs.tpc_begin(t, tid)
    fs.store(fs.new_oid(), z64, b"\\x80\\x03cpersistent.mapping\\nPersistentMapping\\nq\\x00."
             b"\\x80\\x03}q\\x01X\\x04\\x00\\x00\\x00dataq\\x02}q\\x03s.", "", t)
    fs.tpc_vote(t)
    if not finish:
        os._exit(0)  # as SIGKILL between vote and finish: no finish, no close
    fs.tpc_finish(t)
    fs.close()
""")


def test_runzeo_target_killed_between_vote_and_finish(runzeos, zeoraid_bin, spawn, tmp_path):
    """A runzeo whose FileStorage was killed between the vote and the finish of
    transaction X reports X as its last transaction without holding it (Python's
    FileStorage cuts X off when it reopens the file but keeps its tid). The
    source holds X next: the recovery says what happened and that the backend
    must be restarted once more — not that it diverged — and after that restart
    it copies X and what follows, `verify` identical."""
    history = tmp_path / "history" / "Data.fs"
    common = python_history(history, transactions=10, size=100)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(history, tmp_path / d / "Data.fs")
    last = int(last_tid_of_data_fs(history), 16)
    x, y = "%016x" % (last + 1000), "%016x" % (last + 2000)

    def commit(path, tid, how):
        subprocess.run([sys.executable, "-c", INTERRUPTED_COMMIT, str(path), tid, how],
                       check=True, timeout=60)
    commit(tmp_path / "b" / "Data.fs", x, "crash")
    commit(tmp_path / "a" / "Data.fs", x, "finish")
    commit(tmp_path / "a" / "Data.fs", y, "finish")
    b = runzeos("b")
    raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", [
        filestorage_section("a", tmp_path / "a" / "Data.fs"),
        runzeo_section("b", b, "10s"),
    ]).start()
    # Startup already sees that b does not hold the transaction it reports.
    assert raid.states()["b"] == (
        "degraded",
        "reports a last transaction it does not hold (cut off between vote and finish)")
    assert raid.backend("b")["last_tid"] == x, "b reports the transaction it cut off"

    r = raid.cli("recover", "b", "--wait")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "recovery failed: target b: it reports %s" % x in r.stderr, r.stderr
    assert UNFINISHED in r.stderr and "diverged" not in r.stderr, r.stderr
    assert b.stop() == 0
    restart(raid, b)
    recover_wait(raid, "b")
    assert recovery_reports(raid) == [(common, 2)]
    assert verify_identical(raid, ["a", "b"]) == common + 2
    assert raid.stop() == 0
    assert b.stop() == 0
    assert same_records(fs_view(b.path, tmp_path / "nb")) == same_records(
        fs_view(tmp_path / "a" / "Data.fs", tmp_path / "na"))
