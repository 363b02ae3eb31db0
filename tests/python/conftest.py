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
