"""Start ZEO servers for ZODB's/ZEO's test suites as external processes.

`start_zeo_server` has the signature and the `(addr, stop)` result of
`ZEO._forker.start_zeo_server`; `install()` puts it in place of
`ZEO.tests.forker.start_zeo_server`, which is where ZEO's tests
(testZEO, ConnectionTests, forker.setUp for doctests) look it up at call time.

The test's configuration (a `<zeo>` from `ZEOConfig` plus a storage section)
is parsed with ZEO's own ZConfig schema and written back as the subset both
servers understand: `<zeo>` (address, read-only, invalidation-queue-size,
invalidation-age, transaction-timeout, msgpack, client-conflict-resolution
true) and one `<filestorage NAME>` (path, blob-dir, create, read-only,
pack-gc). `<blobstorage>` around a `<filestorage>` becomes its `blob-dir`;
`<mappingstorage>` becomes a scratch FileStorage (zeoraid serves only
FileStorage). Anything else (server-side Python wrappers such as
`<hexstorage>`) raises `Unsupported`.

Which server runs is `KIND.value`: "zeoraid" (`ZEORAID_BIN`) or "runzeo".
"""
import atexit
import io
import itertools
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]


class Unsupported(Exception):
    """The test's server configuration cannot be served by an external zeoraid."""


class _Kind:
    value = "zeoraid"


KIND = _Kind()   # which server the next start_zeo_server runs (set by the test)
KIND.test = None  # id of the running test, written into the server logs

_running = {}            # pid -> Popen, every server not yet stopped
_lock = threading.Lock()
_counter = itertools.count(1)
_logdir = None
_TMP = tempfile.gettempdir()  # before tests point tempfile.tempdir at their scratch dirs


def zeoraid_bin():
    path = os.environ.get("ZEORAID_BIN") or str(ROOT / "target" / "debug" / "zeoraid")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "-q", "--bin", "zeoraid"], cwd=ROOT, check=True)
    return path


def logdir():
    """Server logs of this process (removed at exit unless ZEORAID_SUITES_KEEP_LOGS)."""
    global _logdir
    if _logdir is None:
        _logdir = tempfile.mkdtemp(prefix="zeoraid-suites-", dir=_TMP)
        if not os.environ.get("ZEORAID_SUITES_KEEP_LOGS"):
            atexit.register(shutil.rmtree, _logdir, True)
    return _logdir


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ config translation

_schema = None


def _zeo_schema():
    global _schema
    if _schema is None:
        import ZConfig
        import ZEO
        _schema = ZConfig.loadSchema(
            os.path.join(os.path.dirname(ZEO.__file__), "schema.xml"))
    return _schema


def _bool(v):
    return "true" if v else "false"


def translate(text, cwd):
    """The test's ZConfig text → (zeo.conf text, (host, port), files, storage name).

    `files` are the storage's paths (for cleanup when the test does not keep them).
    """
    import ZConfig
    try:
        config, _ = ZConfig.loadConfigFile(_zeo_schema(), io.StringIO(text))
    except ZConfig.ConfigurationError as e:
        raise Unsupported("configuration zeoraid's harness cannot translate: %s" % e)
    zeo = config.zeo
    host, port = zeo.address.address
    if not host:
        host = "127.0.0.1"
    if not port:
        port = free_port()
    lines = ["<zeo>", "  address %s:%d" % (host, port)]
    if zeo.read_only:
        lines.append("  read-only true")
    if zeo.invalidation_queue_size is not None:
        lines.append("  invalidation-queue-size %d" % zeo.invalidation_queue_size)
    if zeo.invalidation_age:
        lines.append("  invalidation-age %s" % zeo.invalidation_age)
    if zeo.transaction_timeout:
        lines.append("  transaction-timeout %d" % zeo.transaction_timeout)
    if zeo.msgpack:
        lines.append("  msgpack true")
    # zeoraid always behaves like this; runzeo is told to, so both agree.
    lines.append("  client-conflict-resolution true")
    if zeo.ssl is not None:
        raise Unsupported("<ssl> (ZEO's test certificates are self-signed client "
                          "certificates used as their own CA, which zeoraid's webpki refuses)")
    lines.append("</zeo>")

    if len(config.storages) != 1:
        raise Unsupported("%d storages" % len(config.storages))
    opener = config.storages[0]
    section = opener.config
    stype = section.getSectionType()
    name = section.getSectionName() or "1"
    blob_dir = None
    if stype == "blobstorage":
        blob_dir = section.blob_dir
        opener = section.base
        section = opener.config
        stype = section.getSectionType()
    files = []
    fs = []
    if stype == "filestorage":
        path = os.path.join(cwd, section.path)
        fs.append("  path %s" % path)
        files += [path + ext for ext in ("", ".old", ".tmp", ".lock", ".index", ".pack")]
        blob_dir = blob_dir or section.blob_dir
        if section.create:
            fs.append("  create true")
        if section.read_only:
            fs.append("  read-only true")
        if section.pack_gc is False:
            fs.append("  pack-gc false")
        if section.quota:
            fs.append("  quota %d" % section.quota)
    elif stype == "mappingstorage":
        path = os.path.join(cwd, "mapping-%d-%d.fs" % (os.getpid(), next(_counter)))
        fs.append("  path %s" % path)
        files += [path + ext for ext in ("", ".old", ".tmp", ".lock", ".index", ".pack")]
    else:
        raise Unsupported("server-side storage <%s> (a Python storage wrapper "
                          "zeoraid cannot load)" % stype)
    if blob_dir:
        blob_dir = os.path.join(cwd, blob_dir)
        # Not removed at stop: Python's forker calls storage.cleanup(), and
        # BlobStorage delegates that to FileStorage, which leaves the blob
        # directory (a shared one is the client's too).
        fs.append("  blob-dir %s" % blob_dir)
    out = "\n".join(lines) + "\n\n<filestorage %s>\n%s\n</filestorage>\n" % (
        name, "\n".join(fs))
    return out, (host, port), files, name


# ------------------------------------------------------------------ processes

def _preexec():
    os.setsid()
    # Die with the test process even if it is killed before its cleanup runs.
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _command(kind, config_path):
    if kind == "zeoraid":
        return [zeoraid_bin(), "serve", "-C", config_path]
    if kind == "runzeo":
        return [sys.executable, "-m", "ZEO.runzeo", "-C", config_path]
    raise ValueError(kind)


def _kill(proc, timeout=20):
    """SIGTERM the process group, wait, SIGKILL it if needed."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # stragglers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5)
    with _lock:
        _running.pop(proc.pid, None)


def kill_all():
    """Stop every server still running (session teardown, atexit)."""
    with _lock:
        procs = list(_running.values())
    for proc in procs:
        _kill(proc, timeout=5)


atexit.register(kill_all)


def running():
    with _lock:
        return list(_running.values())


def _wait_listening(proc, addr, log_path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s:\n%s" % (
                proc.args[0], proc.returncode,
                pathlib.Path(log_path).read_text(errors="replace")[-4000:]))
        try:
            with socket.create_connection(addr, timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    _kill(proc)
    raise RuntimeError("server did not listen on %s:%s:\n%s" % (
        addr[0], addr[1], pathlib.Path(log_path).read_text(errors="replace")[-4000:]))


def start_zeo_server(storage_conf=None, zeo_conf=None, port=None, keep=False,
                     path='Data.fs', protocol=None, blob_dir=None,
                     suicide=True, debug=False, threaded=False, start_timeout=33,
                     name=None, log=None, show_config=False):
    """`ZEO._forker.start_zeo_server`, but an external zeoraid/runzeo process."""
    from ZEO._forker import ZEOConfig
    if protocol:
        raise Unsupported("ZEO protocol %r (zeoraid speaks ZEO 5 only)" % (protocol,))
    if not storage_conf:
        storage_conf = '<filestorage>\npath %s\n</filestorage>' % path
    if blob_dir:
        storage_conf = (f'<blobstorage>\nblob-dir {blob_dir}\n'
                        f'{storage_conf}\n</blobstorage>')
    if zeo_conf is None or isinstance(zeo_conf, dict):
        if port is None:
            port = 0
        addr = ('127.0.0.1', port) if isinstance(port, int) else port
        z = ZEOConfig(addr, log=log)
        if zeo_conf:
            z.__dict__.update(zeo_conf)
        zeo_conf = str(z)
    text = str(zeo_conf) + '\n\n' + storage_conf
    cwd = os.getcwd()
    config, addr, files, _ = translate(text, cwd)
    kind = KIND.value
    n = next(_counter)
    config_path = os.path.join(logdir(), "%s-%d.conf" % (kind, n))
    with open(config_path, "w") as f:
        f.write(config)
    log_path = os.path.join(logdir(), "%s-%d.log" % (kind, n))
    env = dict(os.environ)
    env.setdefault("ZEORAID_LOG", "info")
    env.setdefault("NO_COLOR", "1")
    with open(log_path, "ab") as logf:
        logf.write(("# test %s\n# cwd %s\n# %s\n%s\n" % (
            KIND.test, cwd, text.replace("\n", "\n# "), config))
                   .encode())
        logf.flush()
        proc = subprocess.Popen(
            _command(kind, config_path), stdout=logf, stderr=logf,
            stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            preexec_fn=_preexec if threading.current_thread() is threading.main_thread()
            else os.setsid)
    with _lock:
        _running[proc.pid] = proc
    _wait_listening(proc, addr, log_path, start_timeout)

    stopped = []

    def stop(stop_timeout=99):
        if stopped:
            return
        stopped.append(True)
        _kill(proc, timeout=min(stop_timeout, 20))
        if not keep:
            for p in files:
                if os.path.isdir(p):
                    shutil.rmtree(p, True)
                elif os.path.exists(p):
                    try:
                        os.remove(p)
                    except OSError:
                        pass

    stop.log_path = log_path
    stop.proc = proc
    return addr, stop


_installed = []


def install():
    """Route ZEO's test server starts through `start_zeo_server` (idempotent)."""
    if _installed:
        return
    import ZEO.tests.forker
    _installed.append(ZEO.tests.forker.start_zeo_server)
    ZEO.tests.forker.start_zeo_server = start_zeo_server
