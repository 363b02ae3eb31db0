"""Shared fixtures for the integration suite: the zeoraid binary, scratch dirs, ports."""
import os
import pathlib
import socket
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def zeoraid_bin():
    """Path of the zeoraid binary built by test.sh (ZEORAID_BIN)."""
    path = os.environ.get("ZEORAID_BIN") or str(ROOT / "target" / "debug" / "zeoraid")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "-q", "--bin", "zeoraid"], cwd=ROOT, check=True)
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
