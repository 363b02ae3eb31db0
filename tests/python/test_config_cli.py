"""`zeoraid serve -C FILE`: the shipped examples load, bad configs fail clearly."""
import os
import re
import subprocess

import pytest

import conftest

EXAMPLES = conftest.ROOT / "examples"
EXIT_USAGE = 2


def serve_example(zeoraid_bin, tmp_path, name):
    """Run `serve` on a shipped example (ports made free, paths under tmp_path)
    until it listens, then SIGTERM it; returns (exit code, stdout, stderr)."""
    text = (EXAMPLES / name).read_text()
    port, admin = conftest.free_port(), conftest.free_port()
    text = text.replace("127.0.0.1:8100", "127.0.0.1:%d" % port)
    text = text.replace("127.0.0.1:8180", "127.0.0.1:%d" % admin)
    (tmp_path / "zeo.conf").write_text(text)
    proc = subprocess.Popen([zeoraid_bin, "serve", "-C", "zeo.conf"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        conftest._wait_listening(proc, "127.0.0.1", port, "/dev/null")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out.decode(), err.decode(), port


@pytest.mark.parametrize("name", ["zeoraid.conf", "zeo-single.conf"])
def test_embedded_examples_serve(zeoraid_bin, tmp_path, name):
    code, out, err, port = serve_example(zeoraid_bin, tmp_path, name)
    assert code == 0, err
    assert "ZEO address  127.0.0.1:%d" % port in out
    assert "storage '1':" in out
    assert "panicked" not in err


def test_raid_example_plan(zeoraid_bin, tmp_path):
    code, out, err, _ = serve_example(zeoraid_bin, tmp_path, "zeoraid.conf")
    assert code == 0, err
    assert "RAID-1 over 2 backends" in out
    assert "backend 'a': filestorage var/a/Data.fs" in out
    assert "backend 'b': filestorage var/b/Data.fs" in out
    assert (tmp_path / "var" / "a" / "Data.fs").exists()
    assert (tmp_path / "var" / "b" / "Data.fs").exists()


def test_gocept_example_starts_without_its_backends(zeoraid_bin, tmp_path):
    """Both <zeoclient> backends are unreachable: the RAID still starts (failed)
    instead of blocking on them."""
    code, out, err, _ = serve_example(zeoraid_bin, tmp_path, "gocept-zeoraid.conf")
    assert code == 0, err
    assert "zeoclient 127.0.0.1:8101 storage '1'" in out
    assert "zeoclient 127.0.0.1:8102 storage '1'" in out


GOOD_ZEO = "<zeo>\n  address 127.0.0.1:8100\n</zeo>\n"

BAD_CONFIGS = {
    "unknown key": (
        GOOD_ZEO + "<filestorage 1>\n  path Data.fs\n  colour blue\n</filestorage>\n",
        6, "unknown key 'colour' in <filestorage 1>"),
    "unclosed section": (
        GOOD_ZEO + "<raidstorage 1>\n  <filestorage a>\n    path a.fs\n  </filestorage>\n",
        4, "section <raidstorage 1> is never closed"),
    "wrong section end": (
        GOOD_ZEO + "<raidstorage 1>\n  <zeoclient a>\n    server 1\n</raidstorage>\n",
        7, "unexpected </raidstorage>, expected </zeoclient>"),
    "bad boolean": (
        "<zeo>\n  address 8100\n  read-only maybe\n</zeo>\n"
        "<filestorage>\n  path x\n</filestorage>\n",
        3, "read-only: not a valid boolean value: 'maybe'"),
    "bad size": (
        GOOD_ZEO + "<filestorage>\n  path x\n  quota 20XB\n</filestorage>\n",
        6, "quota: not a valid byte size"),
    "missing required key": (
        GOOD_ZEO + "\n<filestorage 1>\n</filestorage>\n",
        5, "<filestorage 1> needs 'path'"),
    "no worker threads": (
        "<zeo>\n  address 8100\n  worker-threads 0\n</zeo>\n"
        "<filestorage>\n  path x\n</filestorage>\n",
        3, "worker-threads: 0 is not between 1 and 1024"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_file_and_line(zeoraid, tmp_path, case):
    text, line, message = BAD_CONFIGS[case]
    path = tmp_path / "zeoraid.conf"
    path.write_text(text)
    result = zeoraid("serve", "-C", str(path))
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    # Exactly one message, naming the file and the line.
    errors = [l for l in result.stderr.splitlines() if "error" in l]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"zeoraid: error: {path}:{line}: "), result.stderr
    assert message in errors[0], result.stderr


def test_bad_worker_threads_variable_is_a_clear_error(zeoraid_bin, tmp_path):
    """Without `worker-threads`, tokio would read TOKIO_WORKER_THREADS itself
    and panic on a value that is not a positive number."""
    path = tmp_path / "zeoraid.conf"
    path.write_text("<zeo>\n  address 127.0.0.1:%d\n</zeo>\n"
                    "<filestorage>\n  path Data.fs\n</filestorage>\n" % conftest.free_port())
    env = dict(os.environ, TOKIO_WORKER_THREADS="lots")
    result = subprocess.run([zeoraid_bin, "serve", "-C", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "TOKIO_WORKER_THREADS must be a positive number" in result.stderr, result.stderr
    assert "panicked" not in result.stderr


def test_missing_file(zeoraid, tmp_path):
    path = tmp_path / "nope.conf"
    result = zeoraid("serve", "-C", str(path))
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith(f"zeoraid: error: {path}: cannot read configuration")
    assert "No such file" in result.stderr


def test_no_config_option(zeoraid):
    result = zeoraid("serve")
    assert result.returncode == EXIT_USAGE
    assert "--config" in result.stderr


def test_warnings_for_ignored_settings(zeoraid, tmp_path):
    path = tmp_path / "zeo.conf"
    path.write_text(
        "%import zc.zlibstorage\n" + GOOD_ZEO
        + "<zeoclient 1>\n  server 127.0.0.1:%d\n  cache-path c.zec\n  wait-timeout 1\n"
          "</zeoclient>\n" % conftest.free_port())
    result = zeoraid("serve", "-C", str(path))
    # Nothing listens there: a proxy that waits for its server gives up clearly.
    assert result.returncode == EXIT_USAGE
    assert "cannot connect" in result.stderr
    assert "%import zc.zlibstorage is ignored" in result.stderr
    assert "'cache-path' in <zeoclient 1> is not supported yet, ignored" in result.stderr


def test_version(zeoraid):
    result = zeoraid("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"zeoraid \d+\.\d+\.\d+\S*\n", result.stdout)


def test_help(zeoraid):
    result = zeoraid("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    serve_help = zeoraid("serve", "--help")
    assert serve_help.returncode == 0
    assert "--config" in serve_help.stdout
