"""Starts `runzeo` processes by forking, without a Python start-up each.

The suites start a runzeo for every test through the proxy and the RAID
variants; importing ZEO costs most of a second each time. This process imports
`ZEO.runzeo` once and forks a server per request: one JSON line on stdin
(`{"config": path, "log": path, "cwd": dir}`) → one line on stdout, the
child's pid. The children are reaped automatically (SIGCHLD ignored) and are
killed when this process dies (PR_SET_PDEATHSIG), which itself dies with the
test process. Run only by harness.py.
"""
import json
import os
import signal
import sys

import ZEO.runzeo


def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _child(request):
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_parent()
    fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    status = 0
    try:
        ZEO.runzeo.main(["-C", request["config"]])
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def _warm_up():
    """Do once what every runzeo would do first: load ZEO's configuration
    schema and import the server and FileStorage modules."""
    import tempfile
    import ZEO.StorageServer  # noqa: F401
    import ZEO.asyncio.server  # noqa: F401
    import ZODB.FileStorage  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "warm-up.conf")
        with open(path, "w") as f:
            f.write("<zeo>\n address 127.0.0.1:0\n</zeo>\n<filestorage>\n"
                    " path %s\n</filestorage>\n" % os.path.join(tmp, "Data.fs"))
        ZEO.runzeo.ZEOOptions().realize(["-C", path])


def main():
    _die_with_parent()
    _warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # no zombies
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        sys.stdout.write("%d\n" % pid)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
