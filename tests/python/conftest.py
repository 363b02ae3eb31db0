"""Shared fixtures for the integration suite: the zeoraid binary, scratch dirs, ports."""
import os
import pathlib
import socket
import subprocess

import pytest

from ports import free_port  # noqa: F401 (conftest.free_port, used across the suite)

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def zeoraid_bin():
    """Path of the zeoraid binary built by test.sh (ZEORAID_BIN)."""
    path = os.environ.get("ZEORAID_BIN") or str(ROOT / "target" / "debug" / "zeoraid")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "-q", "--bin", "zeoraid"], cwd=ROOT, check=True)
    return path


@pytest.fixture
def zeoraid(zeoraid_bin):
    """Run `zeoraid ARGS...` and return the CompletedProcess (text mode)."""
    def run(*args, input=None, check=False, timeout=60):
        return subprocess.run(
            [zeoraid_bin, *args], input=input, capture_output=True, text=True,
            check=check, timeout=timeout)
    return run


@pytest.fixture(scope="session")
def fs_tool():
    """Path of the filestorage engine's `fs-tool` example (crates/filestorage),
    built on demand; see test_filestorage_interop.py."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    subprocess.run(
        ["cargo", "build", "-q", "-p", "zeoraid-filestorage", "--example", "fs-tool"],
        cwd=ROOT, check=True)
    return str(target / "debug" / "examples" / "fs-tool")


# ---------------------------------------------------------------- ZEO server (zeo-server crate)

class ZeoServerProcess:
    """A running `zeoraid serve -C CONFIG`."""

    def __init__(self, proc, host, port, config_path, log_path, workdir):
        self.proc = proc
        self.host = host
        self.port = port
        self.addr = (host, port)
        self.config_path = config_path
        self.log_path = log_path
        self.workdir = workdir

    def log(self):
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def _wait_listening(proc, host, port, log_path, timeout=30):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("zeoraid serve exited with %s:\n%s" % (
                proc.returncode, pathlib.Path(log_path).read_text(errors="replace")))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("zeoraid serve did not listen on %s:%s" % (host, port))


@pytest.fixture
def zeo_server(zeoraid_bin, tmp_path):
    """Start `zeoraid serve -C` on a generated config with one <filestorage 1>.

    `zeo_server(zeo_options="", blobs=True, storage_options="", workdir=None)`
    returns a ZeoServerProcess; every server is stopped (SIGTERM) at teardown.
    """
    started = []
    counter = [0]

    def start(zeo_options="", blobs=True, storage_options="", workdir=None):
        counter[0] += 1
        workdir = pathlib.Path(workdir or tmp_path / ("server%d" % counter[0]))
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        blob = "  blob-dir %s\n" % (workdir / "blobs") if blobs else ""
        config = (
            "<zeo>\n  address 127.0.0.1:%d\n%s</zeo>\n"
            "<filestorage 1>\n  path %s\n%s%s</filestorage>\n"
            % (port, zeo_options, workdir / "Data.fs", blob, storage_options))
        config_path = workdir / "zeo.conf"
        config_path.write_text(config)
        log_path = workdir / "server.log"
        log = open(log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ZEORAID_LOG", "info")
        proc = subprocess.Popen(
            [zeoraid_bin, "serve", "-C", str(config_path)],
            stdout=log, stderr=log, cwd=str(workdir), env=env)
        log.close()
        server = ZeoServerProcess(proc, "127.0.0.1", port, config_path, log_path, workdir)
        started.append(server)
        _wait_listening(proc, "127.0.0.1", port, log_path)
        return server

    yield start
    for server in started:
        server.stop()


# ---------------------------------------------------------------- robustness (test_robustness.py)

@pytest.fixture
def spawn():
    """`spawn(args, **popen_kw)` starts a process in its own process group and
    returns the Popen; every group still alive at teardown is SIGKILLed (also when
    the test failed), so nothing outlives the test."""
    import signal
    procs = []

    def start(args, **kw):
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(args, **kw)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


class RestartableServer:
    """`zeoraid serve -C zeo.conf` on a fixed port and Data.fs that can be killed
    and started again (see the `zeoraid_serve` fixture)."""

    def __init__(self, zeoraid_bin, spawn, workdir, zeo_options="", storage_options="",
                 blobs=False):
        self.bin = zeoraid_bin
        self.spawn = spawn
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.addr = (self.host, self.port)
        self.path = self.workdir / "Data.fs"
        self.log_path = self.workdir / "server.log"
        blob = "  blob-dir %s\n" % (self.workdir / "blobs") if blobs else ""
        self.config_path = self.workdir / "zeo.conf"
        self.config_path.write_text(
            "<zeo>\n  address 127.0.0.1:%d\n%s</zeo>\n"
            "<filestorage 1>\n  path %s\n%s%s</filestorage>\n"
            % (self.port, zeo_options, self.path, blob, storage_options))
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=30):
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ZEORAID_LOG", "info")
        self.proc = self.spawn([self.bin, "serve", "-C", str(self.config_path)],
                               stdout=log, stderr=log, cwd=str(self.workdir), env=env)
        log.close()
        _wait_listening(self.proc, self.host, self.port, self.log_path, timeout)
        return self

    def kill(self):
        """SIGKILL: a crash (no shutdown, no index save, no flush)."""
        import signal
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def zeoraid_serve(zeoraid_bin, spawn, tmp_path):
    """`zeoraid_serve(workdir=None, zeo_options="", storage_options="", blobs=False)`
    returns a started RestartableServer (fixed port and Data.fs: `kill()` then
    `start()` is a crash and a restart); all are stopped at teardown."""
    servers = []

    def make(workdir=None, start=True, **kw):
        server = RestartableServer(
            zeoraid_bin, spawn, workdir or tmp_path / ("restartable%d" % len(servers)), **kw)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()
