"""`zeoraid serve -C FILE`: the shipped examples load, bad configs fail clearly."""
import re

import pytest

import conftest

EXAMPLES = conftest.ROOT / "examples"
EXIT_USAGE = 2
EXIT_NOT_IMPLEMENTED = 1


# zeo-single.conf (a plain <filestorage>) is really served now: see test_zeo_server.py.
@pytest.mark.parametrize("name", ["zeoraid.conf", "gocept-zeoraid.conf"])
def test_examples_parse(zeoraid, name):
    result = zeoraid("serve", "-C", str(EXAMPLES / name))
    # A valid config: the plan on stdout, then "not implemented" (no fake serving).
    assert result.returncode == EXIT_NOT_IMPLEMENTED, result.stderr
    assert "ZEO address  127.0.0.1:8100" in result.stdout
    assert "storage '1':" in result.stdout
    assert "serving is not implemented yet" in result.stderr


def test_raid_example_plan(zeoraid):
    result = zeoraid("serve", "-C", str(EXAMPLES / "zeoraid.conf"))
    out = result.stdout
    assert "admin API    127.0.0.1:8180" in out
    assert "RAID-1 over 2 backends" in out
    assert "backend 'a': filestorage var/a/Data.fs" in out
    assert "backend 'b': filestorage var/b/Data.fs" in out


def test_gocept_example_plan(zeoraid):
    out = zeoraid("serve", "-C", str(EXAMPLES / "gocept-zeoraid.conf")).stdout
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
        + "<zeoclient 1>\n  server 127.0.0.1:8101\n  cache-size 20MB\n</zeoclient>\n")
    result = zeoraid("serve", "-C", str(path))
    assert result.returncode == EXIT_NOT_IMPLEMENTED
    assert "%import zc.zlibstorage is ignored" in result.stderr
    assert "'cache-size' in <zeoclient 1> is not supported yet, ignored" in result.stderr


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
