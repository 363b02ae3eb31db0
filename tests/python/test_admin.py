"""The management commands (`zeoraid status|details|disable`) without a server:
configuration errors and an unreachable admin API give exit status 2 (Nagios
CRITICAL) with a clear message, as gocept.zeoraid's controller does.

The commands against a running RAID are in pending_test_admin_raid.py until
`zeoraid serve` starts the admin API; the HTTP layer itself is tested in Rust
(crates/zeoraid/src/admin/http_tests.rs, also in headless Chromium).
"""
import pytest

from conftest import free_port

COMMANDS = [
    ["status"],
    ["status", "-S", "1"],
    ["details"],
    ["disable", "b"],
    ["disable", "b", "-S", "1"],
]


def write_config(tmp_path, admin_address=None):
    admin = "  admin-address %s\n" % admin_address if admin_address else ""
    path = tmp_path / "zeoraid.conf"
    path.write_text(
        "<zeo>\n  address 127.0.0.1:8100\n%s</zeo>\n"
        "<raidstorage 1>\n"
        "  <filestorage a>\n    path %s\n  </filestorage>\n"
        "  <filestorage b>\n    path %s\n  </filestorage>\n"
        "</raidstorage>\n" % (admin, tmp_path / "a" / "Data.fs", tmp_path / "b" / "Data.fs"))
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unreachable_server_is_critical(zeoraid, tmp_path, command):
    port = free_port()  # nothing listens there
    config = write_config(tmp_path, "127.0.0.1:%d" % port)
    result = zeoraid(*command, "-C", str(config))
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Could not connect to zeoraid admin API at 127.0.0.1:%d" % port in result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_config_without_admin_address(zeoraid, tmp_path, command):
    config = write_config(tmp_path)
    result = zeoraid(*command, "-C", str(config))
    assert result.returncode == 2, result
    assert "<zeo> has no admin-address" in result.stderr
    assert "admin-address 127.0.0.1:8180" in result.stderr


def test_wildcard_admin_address_is_reached_on_loopback(zeoraid, tmp_path):
    port = free_port()
    config = write_config(tmp_path, ":%d" % port)
    result = zeoraid("status", "-C", str(config))
    assert result.returncode == 2
    assert "Could not connect to zeoraid admin API at 127.0.0.1:%d" % port in result.stderr


def test_missing_config_file(zeoraid, tmp_path):
    result = zeoraid("status", "-C", str(tmp_path / "nope.conf"))
    assert result.returncode == 2
    assert "nope.conf" in result.stderr


def test_help_lists_the_management_commands(zeoraid):
    result = zeoraid("--help")
    assert result.returncode == 0
    for command in ("status", "details", "disable", "recover", "reload", "verify"):
        assert "\n  %s " % command in result.stdout, result.stdout


def test_disable_needs_a_backend_name(zeoraid, tmp_path):
    config = write_config(tmp_path, "127.0.0.1:%d" % free_port())
    result = zeoraid("disable", "-C", str(config))
    assert result.returncode == 2
    assert "NAME" in result.stderr
