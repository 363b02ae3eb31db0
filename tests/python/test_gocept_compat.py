"""Drop-in successor to gocept.zeoraid: its deployment shape and its management
over the ZEO port.

Two Python `runzeo` backends and a zeo.conf as gocept.zeoraid deployments write
it (`%import gocept.zeoraid`, `<raidstorage 1>` with two `<zeoclient>`s, no
admin API), served unchanged by `zeoraid serve`, driven by real ZODB clients:

- `ClientStorage._call('raid_status')`, `raid_details`, `raid_disable`,
  `raid_recover`, `raid_reload` answer with gocept.zeoraid's result shapes;
- gocept.zeoraid's controller command line (`zeoraid [-S] [-H] [-p] status|
  details|recover NAME|disable NAME|reload`) talks to the ZEO port, with the
  controller's output and Nagios exit codes;
- through optimal -> degraded (a backend killed) -> recovering -> optimal.

Without `%import gocept.zeoraid` the methods are off unless `management-methods
true`: calling them closes the connection, as any unknown method in ZEO.
Every process is started through the `spawn` fixture (killed at teardown).
"""
import os
import subprocess
import time

import pytest
import transaction
import ZEO.Exceptions
from ZEO.ClientStorage import ClientStorage

import conftest
from raidprocs import Runzeo, client_db, wait_for


class GoceptServer:
    """`zeoraid serve -C zeo.conf` with a gocept.zeoraid-style zeo.conf."""

    def __init__(self, zeoraid_bin, spawn, workdir, backends, header="%import gocept.zeoraid\n",
                 zeo_extra="", raid_extra=""):
        self.bin = zeoraid_bin
        self.spawn = spawn
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = conftest.free_port()
        self.addr = (self.host, self.port)
        self.log_path = workdir / "zeoraid.log"
        self.config_path = workdir / "zeo.conf"
        sections = "".join(
            "  <zeoclient %s>\n    server %s:%d\n    storage 1\n    timeout 5s\n"
            "    connect-timeout 2s\n  </zeoclient>\n" % (name, b.host, b.port)
            for name, b in backends)
        self.config_path.write_text(
            "%s<zeo>\n  address %s:%d\n%s</zeo>\n<raidstorage 1>\n%s%s</raidstorage>\n"
            % (header, self.host, self.port, zeo_extra, raid_extra, sections))
        self.proc = None

    def start(self, timeout=60):
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ZEORAID_LOG", "info")
        self.proc = self.spawn([self.bin, "serve", "-C", str(self.config_path)],
                               stdout=log, stderr=log, cwd=str(self.workdir), env=env)
        log.close()
        conftest._wait_listening(self.proc, self.host, self.port, self.log_path, timeout)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def controller(self, *args):
        """gocept.zeoraid's controller command line, against the ZEO port."""
        return subprocess.run([self.bin, "-H", self.host, "-p", str(self.port), *args],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def backends(spawn, tmp_path):
    started = []

    def start(*names):
        for name in names:
            started.append(Runzeo(spawn, tmp_path / ("backend-%s" % name)).start())
        return started

    yield start
    for b in started:
        b.kill()


@pytest.fixture
def gocept_server(zeoraid_bin, spawn, tmp_path):
    servers = []

    def start(backends, **kw):
        server = GoceptServer(zeoraid_bin, spawn, tmp_path / "raid", backends, **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def commit(db, key, value):
    with db.transaction() as conn:
        conn.root()[key] = value


def raid_call(addr, method, *args):
    """`ClientStorage._call(method, *args)` on a read-only registration, as
    gocept.zeoraid's controller did."""
    storage = ClientStorage(addr, read_only=True, wait_timeout=30)
    try:
        return storage._call(method, *args)
    finally:
        storage.close()


def test_gocept_deployment_through_degraded_and_recovery(backends, gocept_server):
    a, b = backends("1", "2")
    server = gocept_server([("1", a), ("2", b)])
    db = client_db(server.addr)
    try:
        commit(db, "x", 1)

        # optimal
        assert raid_call(server.addr, "raid_status") == "optimal"
        assert raid_call(server.addr, "raid_details") == {"1": "optimal", "2": "optimal"}
        result = server.controller("status")
        assert (result.stdout, result.returncode) == ("optimal\n", 0), result
        result = server.controller("-S", "1", "details")
        assert result.returncode == 0, result
        assert result.stdout == (
            " %s| Status\n"
            " -------------------------+-------------------\n"
            " RAID 1                   | optimal                  \n"
            " -------------------------+-------------------\n"
            " 1                        | optimal\n"
            " 2                        | optimal\n" % ("127.0.0.1:%d" % server.port).ljust(25))

        # degraded: a backend crashes, clients go on
        b.kill()
        commit(db, "y", 2)
        wait_for(lambda: raid_call(server.addr, "raid_status") == "degraded", 30, "degraded")
        details = raid_call(server.addr, "raid_details")
        assert details["1"] == "optimal"
        assert details["2"].startswith("failed: "), details
        result = server.controller("status")
        assert (result.stdout, result.returncode) == ("degraded\n", 2), result
        result = server.controller("details")
        assert result.returncode == 2
        assert " 2                        | failed: " in result.stdout, result.stdout
        for i in range(20):
            commit(db, "k%d" % i, "v" * 1000)

        # recover: the backend is back; recovering, then optimal
        b.start()

        def recover():
            # The RAID's client of the restarted backend reconnects in the
            # background: a recovery started before fails and leaves it degraded.
            if raid_call(server.addr, "raid_status") == "degraded":
                result = server.controller("recover", "2")
                assert (result.stdout, result.returncode) == ("recovering '2'\n", 0), result
            time.sleep(0.5)
            return raid_call(server.addr, "raid_status") == "optimal"
        wait_for(recover, 60, "a recovery to optimal", interval=0.5)
        result = server.controller("status")
        assert (result.stdout, result.returncode) == ("optimal\n", 0), result
        commit(db, "z", 3)

        # disable over the ZEO port; the last optimal backend is refused
        assert raid_call(server.addr, "raid_disable", "2") == "disabled '2'"
        assert raid_call(server.addr, "raid_status") == "degraded"
        result = server.controller("disable", "1")
        assert result.returncode == 2, result
        assert result.stdout.strip(), result
        with pytest.raises(Exception, match="last optimal backend"):
            raid_call(server.addr, "raid_disable", "1")
        assert raid_call(server.addr, "raid_recover", "2") == "recovering '2'"
        wait_for(lambda: raid_call(server.addr, "raid_status") == "optimal", 60, "optimal")

        # reload with an unchanged file changes nothing
        result = server.controller("reload")
        assert result.returncode == 0, result
        assert "nothing changed" in raid_call(server.addr, "raid_reload")
        with db.transaction() as conn:
            assert conn.root()["z"] == 3
    finally:
        db.close()
    assert "raid_disable requested over the ZEO port" in server.log()


def test_recovering_is_reported(backends, gocept_server):
    """A rate-limited recovery stays `recovering` long enough to be seen: status
    `recovering`, exit 1, details `recovering: …`."""
    a, b = backends("1", "2")
    server = gocept_server([("1", a), ("2", b)], raid_extra="  recovery-rate 200KB\n")
    db = client_db(server.addr)
    try:
        commit(db, "x", 1)
        assert raid_call(server.addr, "raid_disable", "2") == "disabled '2'"
        for i in range(20):
            commit(db, "k%d" % i, "v" * 10000)
        assert raid_call(server.addr, "raid_recover", "2") == "recovering '2'"
        assert raid_call(server.addr, "raid_status") == "recovering"
        assert raid_call(server.addr, "raid_details")["2"].startswith("recovering: ")
        result = server.controller("status")
        assert (result.stdout, result.returncode) == ("recovering\n", 1), result
        result = server.controller("details")
        assert result.returncode == 1
        assert " 2                        | recovering: " in result.stdout, result.stdout
        wait_for(lambda: raid_call(server.addr, "raid_status") == "optimal", 120, "optimal")
    finally:
        db.close()


@pytest.mark.parametrize("header,zeo_extra", [
    ("", ""),
    ("%import gocept.zeoraid\n", "  management-methods false\n"),
], ids=["plain-config", "explicitly-off"])
def test_methods_off_close_the_connection(backends, gocept_server, header, zeo_extra):
    a, b = backends("1", "2")
    server = gocept_server([("1", a), ("2", b)], header=header, zeo_extra=zeo_extra)
    with pytest.raises(ZEO.Exceptions.ClientDisconnected):
        raid_call(server.addr, "raid_status")
    assert "Invalid method, \"raid_status\"" in server.log()
    result = server.controller("status")
    assert result.returncode == 2
    assert "management-methods" in result.stdout, result


def test_methods_on_without_gocept_import(backends, gocept_server):
    a, b = backends("1", "2")
    server = gocept_server([("1", a), ("2", b)], header="",
                           zeo_extra="  management-methods true\n")
    assert raid_call(server.addr, "raid_status") == "optimal"
    result = server.controller("-S", "1", "status")
    assert (result.stdout, result.returncode) == ("optimal\n", 0), result


def test_controller_cannot_connect(zeoraid):
    port = conftest.free_port()
    result = zeoraid("-p", str(port), "status")
    assert result.returncode == 2
    assert result.stdout == "Could not connect to ZEO server at 127.0.0.1:%d\n" % port
    assert result.stderr == ""  # no log lines unless -v, as the controller


def test_controller_and_config_exclude_each_other(zeoraid, tmp_path):
    result = zeoraid("-p", "8100", "status", "-C", str(tmp_path / "zeo.conf"))
    assert result.returncode == 2
    assert "exclude each other" in result.stderr


def test_trying_the_config_read_only_beside_the_running_raid(backends, gocept_server,
                                                            zeoraid_bin, spawn, tmp_path):
    """Step 3 of docs/migrating-from-gocept-zeoraid.md: the same backends served
    read-only on another port show the RAID optimal and change nothing."""
    a, b = backends("1", "2")
    server = gocept_server([("1", a), ("2", b)])
    db = client_db(server.addr)
    try:
        commit(db, "x", 1)
        trial = GoceptServer(zeoraid_bin, spawn, tmp_path / "trial", [("1", a), ("2", b)],
                             zeo_extra="  read-only true\n").start()
        try:
            result = trial.controller("details")
            assert result.returncode == 0, result
            assert " 1                        | optimal\n" in result.stdout
            assert " 2                        | optimal\n" in result.stdout
        finally:
            trial.stop()
        commit(db, "y", 2)
        assert raid_call(server.addr, "raid_status") == "optimal"
    finally:
        db.close()


def test_cluster_mode_coop_as_gocept_meant_it(backends, gocept_server, zeoraid_bin, spawn,
                                              tmp_path):
    """`cluster-mode coop`, written explicitly, keeps gocept.zeoraid's meaning:
    two RAID servers with the same configuration share three runzeo backends
    (reads voted across the backends, tids after every backend's last
    transaction, each server's clients see the other's commits), and a RAID
    fails once no more than half of its backends are optimal — where a
    `single` RAID would go on with one."""
    a, b, c = backends("1", "2", "3")
    coop = "  cluster-mode coop\n"
    named = [("1", a), ("2", b), ("3", c)]
    one = gocept_server(named, raid_extra=coop)
    two = GoceptServer(zeoraid_bin, spawn, tmp_path / "raid-two", named,
                       raid_extra=coop).start()
    db1 = client_db(one.addr)
    db2 = client_db(two.addr)
    try:
        commit(db1, "from_one", 1)
        for i in range(5):
            writer, other = (db2, db1) if i % 2 == 0 else (db1, db2)
            # The other server learns of this commit through the backends'
            # invalidations, a moment later: committing there before would be a
            # genuine conflict (PersistentMapping cannot resolve it).
            wait_for(lambda: writer.lastTransaction() == other.lastTransaction(), 30,
                     "the other server's clients caught up")
            commit(writer, "turn%d" % i, i)
        for db in (db1, db2):
            wait_for(lambda: db.lastTransaction() == db2.lastTransaction()
                     == db1.lastTransaction(), 30, "both clients at the same tid")
            with db.transaction() as conn:
                assert conn.root()["from_one"] == 1
                assert [conn.root()["turn%d" % i] for i in range(5)] == list(range(5))
        for server in (one, two):
            assert raid_call(server.addr, "raid_details") == {
                "1": "optimal", "2": "optimal", "3": "optimal"}
        two.stop()

        # One of three lost: degraded, commits go on.
        c.kill()
        commit(db1, "after_c", 1)
        wait_for(lambda: raid_call(one.addr, "raid_status") == "degraded", 30, "degraded")
        # Two of three lost: 1 of 3 is not more than half, the RAID fails (close).
        b.kill()
        with pytest.raises(Exception) as failure:
            commit(db1, "after_b", 1)
        assert "only 1 of 3 backends are optimal" in str(failure.value), failure.value
        # Nagios critical. (A RAID failed in fail-mode close refuses the
        # controller's registration as every other: it says so, as with a closed
        # gocept.zeoraid storage.)
        result = one.controller("status")
        assert result.returncode == 2, result
        assert result.stdout in ("failed\n", "Could not connect to ZEO server at %s:%d\n"
                                 % one.addr), result
        with pytest.raises(Exception):
            commit(db1, "still_failed", 1)
    finally:
        db1.close()
        db2.close()
        two.stop()
