"""The management surface against a real server: `zeoraid serve -C` with a
`<raidstorage 1>` over two embedded `<filestorage>` backends `a` and `b`, real
ZODB/ZEO clients committing through it, and the CLI (`status`, `details`,
`disable`), the HTTP API (`/status`, `/details`, `/metrics`, the disable
action) and the status page in headless Chromium watching it.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
import ZODB
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage

from conftest import ZeoServerProcess, _wait_listening, free_port


@pytest.fixture
def raid_server(zeoraid_bin, tmp_path):
    """A running `zeoraid serve` with RAID `1` over backends `a` and `b`."""
    servers = []

    def start():
        port, admin_port = free_port(), free_port()
        config = tmp_path / "zeoraid.conf"
        config.write_text(
            "<zeo>\n  address 127.0.0.1:%d\n  admin-address 127.0.0.1:%d\n</zeo>\n"
            "<raidstorage 1>\n"
            "  <filestorage a>\n    path %s\n  </filestorage>\n"
            "  <filestorage b>\n    path %s\n  </filestorage>\n"
            "</raidstorage>\n"
            % (port, admin_port, tmp_path / "a" / "Data.fs", tmp_path / "b" / "Data.fs"))
        log_path = tmp_path / "server.log"
        log = open(log_path, "ab")
        env = dict(os.environ)
        env.setdefault("ZEORAID_LOG", "info")
        proc = subprocess.Popen(
            [zeoraid_bin, "serve", "-C", str(config)],
            stdout=log, stderr=log, cwd=str(tmp_path), env=env)
        log.close()
        server = ZeoServerProcess(proc, "127.0.0.1", port, config, log_path, tmp_path)
        server.admin_port = admin_port
        server.admin = "http://127.0.0.1:%d" % admin_port
        servers.append(server)
        _wait_listening(proc, "127.0.0.1", port, log_path)
        _wait_listening(proc, "127.0.0.1", admin_port, log_path)
        return server

    yield start
    for server in servers:
        server.stop()


def get(server, path):
    with urllib.request.urlopen(server.admin + path, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read().decode()


def post(server, path, headers=None):
    req = urllib.request.Request(server.admin + path, data=b"", method="POST",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def commit(server, key, value):
    db = ZODB.DB(ClientStorage(server.addr, wait_timeout=20))
    try:
        with db.transaction() as conn:
            conn.root()[key] = PersistentMapping(v=value)
        return db.lastTransaction().hex()
    finally:
        db.close()


def cli(zeoraid, server, *args):
    return zeoraid(*args, "-C", str(server.config_path))


def backend(details, name):
    (storage,) = [s for s in details["storages"] if s["name"] == "1"]
    (b,) = [b for b in storage["backends"] if b["name"] == name]
    return b


def test_status_of_an_optimal_raid(raid_server, zeoraid):
    server = raid_server()
    result = cli(zeoraid, server, "status")
    assert (result.returncode, result.stdout) == (0, "optimal\n"), result
    result = cli(zeoraid, server, "status", "-S", "1")
    assert (result.returncode, result.stdout) == (0, "optimal\n"), result
    result = cli(zeoraid, server, "status", "-S", "nope")
    assert result.returncode == 2
    assert 'no storage is named "nope"' in result.stderr

    code, ctype, body = get(server, "/status")
    assert code == 200 and ctype.startswith("application/json")
    assert json.loads(body) == {
        "status": "optimal",
        "storages": [{"name": "1", "kind": "raid", "status": "optimal"}],
    }


def test_details_follow_commits(raid_server, zeoraid):
    server = raid_server()
    tid = commit(server, "x", 1)
    _, _, body = get(server, "/details")
    details = json.loads(body)
    for name in ("a", "b"):
        b = backend(details, name)
        assert b["state"] == "optimal"
        assert b["last_tid"] == tid
        assert b["counters"]["commits"] >= 1

    result = cli(zeoraid, server, "details")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": optimal")
    assert "storage 1 (raid): optimal" in lines
    assert re.search(r"^  backend +state +last tid +last commit \(UTC\)", result.stdout, re.M)
    for name in ("a", "b"):
        assert re.search(r"^  %s +optimal +%s +\d{4}-\d\d-\d\d " % (name, tid),
                         result.stdout, re.M), result.stdout


def test_disable_degrades_and_keeps_the_last_backend(raid_server, zeoraid):
    server = raid_server()
    commit(server, "x", 1)

    result = cli(zeoraid, server, "disable", "b")
    assert result.returncode == 0, result
    assert result.stdout == 'disabled backend "b" of storage "1"\n'

    result = cli(zeoraid, server, "status")
    assert (result.returncode, result.stdout) == (2, "degraded\n")
    result = cli(zeoraid, server, "details")
    assert result.returncode == 2
    assert re.search(r"^  b +degraded .*disabled by operator$", result.stdout, re.M)

    # The last optimal backend stays.
    result = cli(zeoraid, server, "disable", "a", "-S", "1")
    assert result.returncode == 2
    assert "last optimal backend" in result.stderr
    code, answer = post(server, "/storages/1/backends/a/disable")
    assert code == 409 and answer["ok"] is False
    assert "last optimal backend" in answer["message"]

    # Commits go on on `a` alone; `b` stays behind.
    tid = commit(server, "y", 2)
    details = json.loads(get(server, "/details")[2])
    assert backend(details, "a")["last_tid"] == tid
    assert backend(details, "b")["last_tid"] != tid
    assert backend(details, "b")["reason"] == "disabled by operator"

    log = server.log()
    assert "management action" in log and "disable" in log


def test_actions_from_web_pages_and_later_actions(raid_server):
    server = raid_server()
    code, answer = post(server, "/storages/1/backends/b/disable",
                        headers={"Origin": "http://example.invalid"})
    assert code == 403
    assert json.loads(get(server, "/status")[2])["status"] == "optimal"
    # The other actions over HTTP (test_recovery.py drives them through the CLI).
    code, answer = post(server, "/storages/1/backends/b/recover")
    assert code == 409 and "is optimal" in answer["message"], answer
    code, answer = post(server, "/storages/1/verify")
    assert code == 200 and answer["message"].startswith("identical: "), answer
    code, answer = post(server, "/reload")
    assert code == 200 and answer["message"] == "reloaded: nothing changed", answer
    code, answer = post(server, "/storages/1/verify", headers={"Origin": "http://x.invalid"})
    assert code == 403


def test_metrics(raid_server, zeoraid):
    server = raid_server()
    commit(server, "x", 1)
    assert cli(zeoraid, server, "disable", "b").returncode == 0
    code, ctype, text = get(server, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    lines = set(text.splitlines())
    for line in [
        'zeoraid_storage_status{storage="1",kind="raid",status="degraded"} 1',
        'zeoraid_backend_state{storage="1",backend="a",state="optimal"} 1',
        'zeoraid_backend_state{storage="1",backend="b",state="optimal"} 0',
        'zeoraid_backend_state{storage="1",backend="b",state="degraded"} 1',
        "# TYPE zeoraid_backend_commits_total counter",
    ]:
        assert line in lines, text
    commits = [l for l in lines if l.startswith('zeoraid_backend_commits_total{storage="1",backend="a"}')]
    assert len(commits) == 1 and float(commits[0].split()[-1]) >= 1
    assert any(l.startswith("zeoraid_backend_last_transaction_timestamp_seconds{") for l in lines)


def test_status_page_in_headless_chromium(raid_server, zeoraid):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium package is needed (test.sh installs it)"
    server = raid_server()
    commit(server, "x", 1)
    assert cli(zeoraid, server, "disable", "b").returncode == 0
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--user-data-dir=%s" % profile,
             "--dump-dom", server.admin + "/"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    dom = result.stdout
    assert "<title>zeoraid: degraded</title>" in dom
    assert 'data-backend="a" data-state="optimal"' in dom
    assert 'data-backend="b" data-state="degraded"' in dom
    assert "disabled by operator" in dom
