"""Real processes for the RAID fault tests (test_raid_faults.py): Python `runzeo`
backends, a `zeoraid serve` RAID over them with its admin API, and client
processes that commit continuously and record what was acknowledged.

Every process is started through the `spawn` fixture of conftest.py (its own
process group, SIGKILLed at teardown whatever happened), so nothing outlives a
test, also a frozen (SIGSTOPped) one.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import ZODB
import ZODB.FileStorage
import ZODB.utils
from BTrees.OOBTree import OOBTree
from ZEO.ClientStorage import ClientStorage

import conftest


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll `predicate` until it returns something true; return that."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


class Runzeo:
    """Python's `runzeo` on a fixed port and Data.fs, configured as a RAID backend
    must be (`client-conflict-resolution true`): start, SIGKILL, SIGSTOP/SIGCONT,
    stop and start again on the same file. `blobs=True` gives its FileStorage a
    blob directory (`workdir/blobs`)."""

    def __init__(self, spawn, workdir, blobs=False):
        self.spawn = spawn
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = conftest.free_port()
        self.addr = (self.host, self.port)
        self.path = self.workdir / "Data.fs"
        self.log_path = self.workdir / "runzeo.log"
        self.blob_dir = self.workdir / "blobs" if blobs else None
        self.config_path = self.workdir / "runzeo.conf"
        self.config_path.write_text(
            "<zeo>\n  address %s:%d\n  client-conflict-resolution true\n</zeo>\n"
            "<filestorage 1>\n  path %s\n%s</filestorage>\n"
            % (self.host, self.port, self.path,
               "  blob-dir %s\n" % self.blob_dir if blobs else ""))
        self.proc = None
        self.frozen = False

    def start(self, timeout=60):
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")
        self.proc = self.spawn([sys.executable, "-m", "ZEO.runzeo", "-C", str(self.config_path)],
                               stdout=log, stderr=log, cwd=str(self.workdir))
        log.close()
        conftest._wait_listening(self.proc, self.host, self.port, self.log_path, timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL (a crash)."""
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.frozen = False

    def freeze(self):
        """SIGSTOP: the process keeps its sockets open and answers nothing."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        if self.running():
            os.killpg(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self, timeout=30):
        """SIGTERM (a clean shutdown) and wait."""
        if self.frozen:
            self.thaw()
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode


def runzeo_section(name, backend, timeout, extra=""):
    """A `<zeoclient>` backend section for a Runzeo; `extra`: more key lines
    (e.g. its blob cache `    blob-dir DIR\n`)."""
    return ("  <zeoclient %s>\n    server %s:%d\n    timeout %s\n    connect-timeout 2s\n"
            "%s  </zeoclient>\n" % (name, backend.host, backend.port, timeout, extra))


def filestorage_section(name, path, extra=""):
    return "  <filestorage %s>\n    path %s\n%s  </filestorage>\n" % (name, path, extra)


class RaidServer:
    """`zeoraid serve -C` with `<raidstorage 1>` over the given backend sections,
    an admin API, fixed ports (so it can be stopped and started again)."""

    def __init__(self, zeoraid_bin, spawn, workdir, sections, raid_options=""):
        self.bin = zeoraid_bin
        self.spawn = spawn
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = conftest.free_port()
        self.admin_port = conftest.free_port()
        self.addr = (self.host, self.port)
        self.admin = "http://%s:%d" % (self.host, self.admin_port)
        self.log_path = self.workdir / "zeoraid.log"
        self.config_path = self.workdir / "zeoraid.conf"
        self.config_path.write_text(
            "<zeo>\n  address %s:%d\n  admin-address %s:%d\n</zeo>\n"
            "<raidstorage 1>\n%s%s</raidstorage>\n"
            % (self.host, self.port, self.host, self.admin_port, raid_options,
               "".join(sections)))
        self.proc = None

    def start(self, timeout=60):
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ZEORAID_LOG", "info")
        self.proc = self.spawn([self.bin, "serve", "-C", str(self.config_path)],
                               stdout=log, stderr=log, cwd=str(self.workdir), env=env)
        log.close()
        conftest._wait_listening(self.proc, self.host, self.port, self.log_path, timeout)
        conftest._wait_listening(self.proc, self.host, self.admin_port, self.log_path, timeout)
        return self

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError("zeoraid did not stop within %ss after SIGTERM" % timeout)
        return self.proc.returncode

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args, timeout=60):
        """`zeoraid ARGS -C zeoraid.conf` (CompletedProcess, text)."""
        return subprocess.run([self.bin, *args, "-C", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout)

    def details(self):
        with urllib.request.urlopen(self.admin + "/details", timeout=30) as resp:
            return json.loads(resp.read())

    def backend(self, name):
        (storage,) = [s for s in self.details()["storages"] if s["name"] == "1"]
        (b,) = [b for b in storage["backends"] if b["name"] == name]
        return b

    def states(self):
        (storage,) = [s for s in self.details()["storages"] if s["name"] == "1"]
        return {b["name"]: (b["state"], b.get("reason")) for b in storage["backends"]}


def client_db(addr, **kw):
    kw.setdefault("wait_timeout", 30)
    return ZODB.DB(ClientStorage(addr, **kw))


def make_trees(addr, names):
    """One OOBTree per writer in the root (so writers never conflict)."""
    db = client_db(addr)
    try:
        with db.transaction() as conn:
            for name in names:
                conn.root()[name] = OOBTree()
    finally:
        db.close()


WRITER = """
    import os, sys, time, traceback, transaction, ZODB
    from ZEO.ClientStorage import ClientStorage

    host, port, name, ack_path, err_path, stop_path, size, pause = sys.argv[1:9]
    size, pause = int(size), float(pause)
    db = ZODB.DB(ClientStorage((host, int(port)), wait_timeout=60))
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    i = 0
    with open(ack_path, "a", buffering=1) as ack, open(err_path, "a", buffering=1) as err:
        while not os.path.exists(stop_path):
            i += 1
            key = "%s-%d" % (name, i)
            started = time.time()
            try:
                tm.begin()
                conn.root()[name][key] = (i, "x" * size)
                tm.get().note(key)
                tm.commit()
            except Exception as e:
                tm.abort()
                err.write("%.3f %s %r\\n" % (time.time(), key, e))
                err.write(traceback.format_exc())
                time.sleep(0.05)
                continue
            # tm.commit() returned: acknowledged
            ack.write("%s %.3f %.3f\\n" % (key, started, time.time() - started))
            if pause:
                time.sleep(pause)
    conn.close()
    db.close()
"""


class Writers:
    """N client processes, each committing distinct keys into its own OOBTree
    (`root[name][name-i]`) in a loop and appending every acknowledged key (with
    start time and latency) to NAME.acks; exceptions go to NAME.err. `pause`:
    seconds each waits after an acknowledged commit (a steadier, lower load)."""

    def __init__(self, spawn, workdir, addr, count=4, size=0, prefix="w", pause=0.0):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.names = ["%s%d" % (prefix, i) for i in range(count)]
        self.stop_path = self.workdir / "stop"
        script = self.workdir / "writer.py"
        script.write_text(textwrap.dedent(WRITER))
        make_trees(addr, self.names)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.procs = [
            spawn([sys.executable, str(script), addr[0], str(addr[1]), name,
                   str(self.ack_path(name)), str(self.err_path(name)), str(self.stop_path),
                   str(size), str(pause)],
                  env=env, stdout=subprocess.DEVNULL,
                  stderr=open(self.workdir / (name + ".stderr"), "w"))
            for name in self.names]

    def ack_path(self, name):
        return self.workdir / (name + ".acks")

    def err_path(self, name):
        return self.workdir / (name + ".err")

    def acks(self):
        """{name: [(key, start, latency)]}"""
        out = {}
        for name in self.names:
            path = self.ack_path(name)
            rows = []
            if path.exists():
                for line in path.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        rows.append((parts[0], float(parts[1]), float(parts[2])))
            out[name] = rows
        return out

    def acked_keys(self):
        return {name: {row[0] for row in rows} for name, rows in self.acks().items()}

    def count(self):
        return sum(len(v) for v in self.acks().values())

    def errors(self):
        return "".join(self.err_path(n).read_text() for n in self.names
                       if self.err_path(n).exists())

    def wait_acks(self, more_than, timeout=60):
        return wait_for(lambda: self.count() > more_than, timeout,
                        "more than %d acknowledged commits" % more_than)

    def stop(self, timeout=60):
        self.stop_path.write_text("")
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError("a writer did not stop within %ss (stuck commit?)" % timeout)
        stderr = "".join((self.workdir / (n + ".stderr")).read_text() for n in self.names)
        return [p.returncode for p in self.procs], stderr


def keys_in_data_fs(path, names):
    """{name: set(keys)} read from a Data.fs by Python's FileStorage (read-only)."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path), read_only=True))
    try:
        with db.transaction() as conn:
            root = conn.root()
            return {name: set(root[name].keys()) if name in root else set() for name in names}
    finally:
        db.close()


def last_tid_of_data_fs(path):
    """The tid of the last transaction committed in the Data.fs at `path`.

    Read from the file's transactions, not `lastTransaction()`: a FileStorage
    closed with a transaction voted but never finished (runzeo stopped before it
    read the abort or the disconnect) leaves it at the end with the checkpoint
    status 'c', and Python's FileStorage reports that uncommitted tid as its
    `lastTransaction()` when it opens the file."""
    storage = ZODB.FileStorage.FileStorage(str(path), read_only=True)
    try:
        last = ZODB.utils.z64
        for txn in storage.iterator():
            last = txn.tid
        return last.hex()
    finally:
        storage.close()
