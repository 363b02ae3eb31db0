"""The RAID under real faults, with real processes (the RAID issue's "Done when").

A `zeoraid serve` RAID with its admin API over real backends — Python `runzeo`
servers (started here with `client-conflict-resolution true`, as RAID backends must
run) reached through `<zeoclient>` with a short per-backend `timeout`, and/or
embedded `<filestorage>` Data.fs files — while client processes (ZODB +
ClientStorage) commit distinct keys into their own OOBTree in a loop and record
every acknowledged key:

1. a runzeo backend SIGKILLed mid-stream: clients see no error, `zeoraid status`
   says `degraded` (exit 2), `details` names the backend and the reason, every
   acknowledged key is in the survivor's Data.fs (read by Python's FileStorage
   after zeoraid and the survivor stopped);
2. a runzeo backend frozen (SIGSTOP) past its timeout: the same, commits stall at
   most about the timeout, the reason says it timed out;
3. a mixed RAID (embedded + runzeo), the runzeo killed: the data is in the
   embedded Data.fs;
4. an embedded backend whose disk fills (a 2 MiB tmpfs mounted by the test; it
   needs root — without it the test is skipped) and one whose `quota` is
   exceeded: commits go on on the other backend, the full one is degraded with the
   error as reason;
5. every backend down (killed, or frozen): a commit fails with a clear error
   within the timeouts and nothing is acknowledged; restarted backends and a
   restarted zeoraid derive the states from the backends (same tid: optimal; one
   that missed commits: `degraded` / `missing transactions`);
6. reads fail over: a client reading many objects while a backend is killed sees
   no error.

Every process runs in its own process group and is SIGKILLed at teardown (the
`spawn` fixture), also when a test fails; a tmpfs is unmounted by a finalizer.
The default run takes under a minute; `ZEORAID_STRESS=1` in the environment runs
longer streams (ten times as many commits around each fault) with 8 writers
instead of 4.
"""
import os
import subprocess
import threading
import time

import pytest
import ZODB
import ZODB.FileStorage
from persistent.mapping import PersistentMapping

from raidprocs import (
    RaidServer, Runzeo, Writers, client_db, filestorage_section, keys_in_data_fs,
    last_tid_of_data_fs, runzeo_section, wait_for)

STRESS = os.environ.get("ZEORAID_STRESS", "") not in ("", "0")
TIMEOUT = 5  # the per-backend timeout of the <zeoclient> backends, seconds


def scale(normal, stress):
    return stress if STRESS else normal


WRITERS = scale(4, 8)  # client processes committing concurrently


def status_is(raid, word):
    """Wait until `zeoraid status` answers `word`; returns the CompletedProcess."""
    def check():
        result = raid.cli("status")
        return result if result.stdout == word + "\n" else None
    return wait_for(check, 30, "zeoraid status %s" % word, interval=0.2)


def assert_degraded(raid, name, reason_contains):
    """`status` exits 2 with `degraded`; `details` (CLI and JSON) shows `name`
    degraded with a reason containing `reason_contains`."""
    result = status_is(raid, "degraded")
    assert result.returncode == 2, result
    state, reason = raid.states()[name]
    assert state == "degraded"
    assert reason and reason_contains in reason, reason
    details = raid.cli("details")
    assert details.returncode == 2, details
    line = [l for l in details.stdout.splitlines() if l.split()[:1] == [name]]
    assert len(line) == 1 and " degraded " in line[0] and reason_contains in line[0], \
        details.stdout
    return reason


def assert_all_acked_on(path, writers):
    """Every acknowledged key is in the Data.fs at `path` (Python FileStorage)."""
    acked = writers.acked_keys()
    found = keys_in_data_fs(path, writers.names)
    for name in writers.names:
        missing = acked[name] - found[name]
        assert not missing, "%d acknowledged keys of %s missing from %s: %s" % (
            len(missing), name, path, sorted(missing)[:10])
    return sum(len(v) for v in acked.values())


def stream_with_fault(raid, writers, fault, *, before=40, after=40):
    """Let the writers commit `before` transactions, apply `fault()`, let them
    commit `after` more; returns the ack count when the fault was applied."""
    writers.wait_acks(before)
    at = writers.count()
    fault()
    writers.wait_acks(at + after, timeout=90)
    return at


def stop_writers_cleanly(writers):
    codes, stderr = writers.stop()
    assert writers.errors() == "", "clients saw errors:\n" + writers.errors()
    assert codes == [0] * len(codes), stderr


@pytest.fixture
def runzeo(spawn, tmp_path):
    """`runzeo(name)`: a started Runzeo under tmp_path/name; stopped at teardown
    (the `spawn` fixture SIGKILLs whatever is left, frozen or not)."""
    started = []

    def start(name):
        server = Runzeo(spawn, tmp_path / name).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.frozen:
            server.thaw()
        server.kill()


@pytest.fixture
def raid_server(zeoraid_bin, spawn, tmp_path):
    """`raid_server(sections, raid_options="")`: a started RaidServer."""
    def start(sections, raid_options="", start=True):
        raid = RaidServer(zeoraid_bin, spawn, tmp_path / "raid", sections, raid_options)
        return raid.start() if start else raid
    return start


def two_runzeo_raid(runzeo, raid_server, timeout=TIMEOUT):
    a, b = runzeo("a"), runzeo("b")
    raid = raid_server([runzeo_section("a", a, "%ds" % timeout),
                        runzeo_section("b", b, "%ds" % timeout)])
    result = raid.cli("status")
    assert (result.returncode, result.stdout) == (0, "optimal\n"), result
    return a, b, raid


# ---------------------------------------------------------------- 1. SIGKILL

@pytest.mark.parametrize("victim", ["a", "b"])
def test_kill_9_one_runzeo_backend_while_clients_commit(runzeo, raid_server, spawn, tmp_path,
                                                        victim):
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    backends = {"a": a, "b": b}
    survivor = backends["b" if victim == "a" else "a"]
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS)
    stream_with_fault(raid, writers, backends[victim].kill,
                      before=scale(40, 400), after=scale(60, 1000))

    reason = assert_degraded(raid, victim, "failed")
    assert raid.states()[survivor.workdir.name] == ("optimal", None)
    stop_writers_cleanly(writers)
    tid = raid.backend(survivor.workdir.name)["last_tid"]
    assert raid.stop() == 0
    assert "panicked" not in raid.log()
    survivor.stop()
    n = assert_all_acked_on(survivor.path, writers)
    assert last_tid_of_data_fs(survivor.path) == tid
    print("acknowledged %d commits; %s degraded: %s" % (n, victim, reason))


# ---------------------------------------------------------------- 2. SIGSTOP

def test_frozen_runzeo_backend_is_degraded_after_its_timeout(runzeo, raid_server, spawn,
                                                             tmp_path):
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS)
    frozen_at = []

    def freeze():
        frozen_at.append(time.time())
        b.freeze()

    stream_with_fault(raid, writers, freeze, before=scale(40, 400), after=scale(60, 1000))
    reason = assert_degraded(raid, "b", "timed out")
    assert raid.states()["a"] == ("optimal", None)
    stop_writers_cleanly(writers)

    # A commit stalls at most about the timeout (a read and then a vote can each
    # wait for it once, before the frozen backend is out).
    latencies = [lat for rows in writers.acks().values() for (_, start, lat) in rows
                 if start + lat >= frozen_at[0]]
    assert max(latencies) <= 2 * TIMEOUT + 3, max(latencies)
    tid = raid.backend("a")["last_tid"]
    assert raid.stop() == 0
    b.thaw()
    b.kill()
    a.stop()
    n = assert_all_acked_on(a.path, writers)
    assert last_tid_of_data_fs(a.path) == tid
    print("acknowledged %d commits, longest stall %.1fs; b degraded: %s"
          % (n, max(latencies), reason))


# ---------------------------------------------------------------- 3. mixed RAID

def test_mixed_raid_embedded_survives_a_killed_runzeo(runzeo, raid_server, spawn, tmp_path):
    b = runzeo("b")
    embedded = tmp_path / "a" / "Data.fs"
    raid = raid_server([filestorage_section("a", embedded),
                        runzeo_section("b", b, "%ds" % TIMEOUT)])
    assert raid.cli("status").returncode == 0
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=WRITERS)
    stream_with_fault(raid, writers, b.kill, before=scale(40, 400), after=scale(60, 1000))
    assert_degraded(raid, "b", "failed")
    assert raid.states()["a"] == ("optimal", None)
    stop_writers_cleanly(writers)
    tid = raid.backend("a")["last_tid"]
    assert raid.stop() == 0
    assert_all_acked_on(embedded, writers)
    assert last_tid_of_data_fs(embedded) == tid


# ---------------------------------------------------------------- 4. a full disk

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs mounted at tmp_path/small (unmounted at teardown)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s); the quota variant covers a full disk"
                    % result.stderr.strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("how", ["tmpfs", "quota"])
def test_backend_whose_disk_fills_is_degraded(raid_server, spawn, tmp_path, request, how):
    if how == "tmpfs":
        full = request.getfixturevalue("small_tmpfs") / "Data.fs"
        extra = ""
    else:
        full = tmp_path / "full" / "Data.fs"
        extra = "    quota 2MB\n"
    other = tmp_path / "a" / "Data.fs"
    # The full backend comes first in configuration order: even a 1:1
    # disagreement must not let its failure win.
    raid = raid_server([filestorage_section("full", full, extra),
                        filestorage_section("a", other)])
    writers = Writers(spawn, tmp_path / "clients", raid.addr, count=4, size=20000)

    def degraded():
        return raid.states()["full"][0] == "degraded"

    wait_for(degraded, 120, "the full backend to be degraded", interval=0.2)
    at = writers.count()
    writers.wait_acks(at + 20)
    reason = assert_degraded(raid, "full", "")
    assert raid.states()["a"] == ("optimal", None)
    stop_writers_cleanly(writers)
    assert raid.stop() == 0
    n = assert_all_acked_on(other, writers)
    assert n > at
    assert ("quota" if how == "quota" else "No space left") in reason, reason
    print("%s: acknowledged %d commits (%d after the backend was full); full degraded: %s"
          % (how, n, n - at, reason))


# ---------------------------------------------------------------- 5. all down, restart

def test_all_backends_down_then_restart_derives_optimal(runzeo, raid_server, tmp_path):
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    db = client_db(raid.addr)
    with db.transaction() as conn:
        conn.root()["before"] = PersistentMapping(v=1)
    tid = db.lastTransaction().hex()
    a.kill()
    b.kill()

    started = time.time()
    with pytest.raises(Exception) as failure:
        with db.transaction() as conn:
            conn.root()["during"] = PersistentMapping(v=2)
    took = time.time() - started
    assert took < 2 * TIMEOUT + 5, took
    assert "no optimal backend left" in str(failure.value), failure.value
    print("commit with every backend down: %.1fs, %s: %s"
          % (took, type(failure.value).__name__, failure.value))
    db.close()
    result = status_is(raid, "failed")
    assert result.returncode == 2
    assert raid.stop() == 0

    for backend in (a, b):
        assert last_tid_of_data_fs(backend.path) == tid
        db2 = ZODB.DB(ZODB.FileStorage.FileStorage(str(backend.path), read_only=True))
        with db2.transaction() as conn:
            assert "during" not in conn.root()
            assert conn.root()["before"]["v"] == 1
        db2.close()

    a.start()
    b.start()
    raid.start()
    result = raid.cli("status")
    assert (result.returncode, result.stdout) == (0, "optimal\n"), (result, raid.log())
    for name in ("a", "b"):
        assert raid.backend(name)["last_tid"] == tid
    db = client_db(raid.addr)
    with db.transaction() as conn:
        assert conn.root()["before"]["v"] == 1
        assert "during" not in conn.root()
        conn.root()["after"] = PersistentMapping(v=3)
    db.close()
    assert raid.cli("status").returncode == 0


def test_all_backends_frozen_commit_fails_within_the_timeout(runzeo, raid_server):
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    db = client_db(raid.addr)
    with db.transaction() as conn:
        conn.root()["before"] = PersistentMapping(v=1)
    tid = db.lastTransaction().hex()
    a.freeze()
    b.freeze()
    outcome = []

    def commit():
        started = time.time()
        try:
            with db.transaction() as conn:
                conn.root()["during"] = PersistentMapping(v=2)
            outcome.append(("committed", time.time() - started))
        except Exception as e:
            outcome.append((e, time.time() - started))

    thread = threading.Thread(target=commit, daemon=True)
    thread.start()
    thread.join(3 * TIMEOUT + 10)
    assert outcome, "the commit hangs with every backend frozen"
    error, took = outcome[0]
    assert isinstance(error, Exception), outcome
    assert "no optimal backend left" in str(error), error
    assert took < 2 * TIMEOUT + 5, took
    result = status_is(raid, "failed")
    assert result.returncode == 2
    reasons = [reason for state, reason in raid.states().values()]
    assert all("timed out" in r for r in reasons), reasons
    db.close()
    assert raid.stop() == 0
    for backend in (a, b):
        backend.thaw()
        backend.stop()
        assert last_tid_of_data_fs(backend.path) == tid


def test_restart_degrades_the_backend_that_missed_commits(runzeo, raid_server, tmp_path):
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    db = client_db(raid.addr)
    with db.transaction() as conn:
        conn.root()["x"] = PersistentMapping(v=1)
    b.stop()  # a clean stop; the RAID notices on the next commit
    for i in range(3):
        with db.transaction() as conn:
            conn.root()["y%d" % i] = PersistentMapping(v=i)
    tid = db.lastTransaction().hex()
    db.close()
    assert_degraded(raid, "b", "")
    assert raid.stop() == 0
    a.stop()
    assert last_tid_of_data_fs(a.path) == tid
    assert last_tid_of_data_fs(b.path) < tid

    a.start()
    b.start()
    raid.start()
    assert_degraded(raid, "b", "missing transactions")
    assert raid.states() == {"a": ("optimal", None), "b": ("degraded", "missing transactions")}
    assert raid.backend("a")["last_tid"] == tid
    # Commits go on on `a` alone.
    db = client_db(raid.addr)
    with db.transaction() as conn:
        assert conn.root()["y2"]["v"] == 2
        conn.root()["z"] = PersistentMapping(v=9)
    db.close()
    assert raid.states()["b"] == ("degraded", "missing transactions")


def test_restart_with_a_backend_down_writes_on_the_recorded_one(runzeo, raid_server):
    """The RAID records which backends hold every acknowledged commit (its
    state-file): restarted while one backend is dead, it goes on writing on a
    recorded one; restarted with only a backend that was degraded before, it
    refuses writes (ReadOnlyError) until the missing one answers."""
    import ZODB.POSException
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    db = client_db(raid.addr)
    with db.transaction() as conn:
        conn.root()["x"] = PersistentMapping(v=1)
    db.close()
    assert raid.stop() == 0
    state = (raid.workdir / "zeoraid.conf.1.state").read_text()
    assert state.splitlines() == ["zeoraid optimal backends 1", "a", "b"], state

    b.kill()
    raid.start()
    assert_degraded(raid, "b", "unreachable at startup")
    db = client_db(raid.addr)
    with db.transaction() as conn:
        conn.root()["y"] = PersistentMapping(v=2)
    tid = db.lastTransaction().hex()
    db.close()
    assert raid.stop() == 0
    state = (raid.workdir / "zeoraid.conf.1.state").read_text()
    assert state.splitlines() == ["zeoraid optimal backends 1", "a"], state

    # Now `a` (the only one holding "y") is down and `b` is back: no fork.
    a.kill()
    b.start()
    raid.start()
    db = client_db(raid.addr)
    with pytest.raises(ZODB.POSException.ReadOnlyError):
        with db.transaction() as conn:
            conn.root()["fork"] = PersistentMapping(v=3)
    db.close()
    a.start()
    wait_for(lambda: raid.states()["a"] == ("optimal", None), 30, "a answers", interval=0.2)
    assert raid.states()["b"] == ("degraded", "missing transactions")
    db = client_db(raid.addr)
    with db.transaction() as conn:
        assert conn.root()["y"]["v"] == 2
        conn.root()["z"] = PersistentMapping(v=4)
    assert db.lastTransaction().hex() > tid
    db.close()


# ---------------------------------------------------------------- 6. reads fail over

def test_reads_fail_over_when_a_backend_is_killed(runzeo, raid_server):
    a, b, raid = two_runzeo_raid(runzeo, raid_server)
    count = scale(300, 3000)
    db = client_db(raid.addr)
    for start in range(0, count, 100):
        with db.transaction() as conn:
            for i in range(start, min(start + 100, count)):
                conn.root()["o%d" % i] = PersistentMapping(v=i)
    db.close()

    # A fresh client (empty cache): every object is loaded through the RAID,
    # round-robin over both backends until one is killed.
    db = client_db(raid.addr)
    with db.transaction() as conn:
        root = conn.root()
        for i in range(count):
            if i == count // 3:
                b.kill()
            assert root["o%d" % i]["v"] == i
    db.close()
    state, reason = raid.states()["b"]
    assert state == "degraded" and "failed" in reason, reason
    assert raid.states()["a"] == ("optimal", None)
