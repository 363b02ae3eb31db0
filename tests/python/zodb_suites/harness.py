"""Start ZEO servers for ZODB's/ZEO's test suites as external processes.

`start_zeo_server` has the signature and the `(addr, stop)` result of
`ZEO._forker.start_zeo_server`; `install()` puts it in place of
`ZEO.tests.forker.start_zeo_server`, which is where ZEO's tests
(testZEO, ConnectionTests, forker.setUp for doctests) look it up at call time.

The test's configuration (a `<zeo>` from `ZEOConfig` plus a storage section)
is parsed with ZEO's own ZConfig schema (`translate`): the `<zeo>` subset both
servers understand (address, read-only, invalidation-queue-size,
invalidation-age, transaction-timeout, msgpack, client-conflict-resolution
true) and one FileStorage (path, blob-dir, create, read-only, pack-gc, quota).
`<blobstorage>` around a `<filestorage>` becomes its `blob-dir`;
`<mappingstorage>` becomes a scratch FileStorage. Anything else (server-side
Python wrappers such as `<hexstorage>`) raises `Unsupported`.

`plan` turns that into the servers of `KIND.value` (`KINDS`): "zeoraid" or
"runzeo" serving the FileStorage themselves; "proxy", a zeoraid `<zeoclient>`
in front of a runzeo on it; "raidN-fs|zeo|mixed", a zeoraid `<raidstorage>`
over N backends (`LAYOUTS`), the first on the test's own files, the others
next to them (`Data.fs-b`, `blobs-b`). Backend runzeos are forked from
runzeo_zygote.py (no Python start-up per server).
"""
import atexit
import io
import itertools
import json
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

from ports import free_port

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


class StorageSpec:
    """The test's one storage, as the harness understood it."""

    def __init__(self, name, path, blob_dir=None, create=False, read_only=False,
                 pack_gc=True, quota=None):
        self.name = name
        self.path = path
        self.blob_dir = blob_dir
        self.create = create
        self.read_only = read_only
        self.pack_gc = pack_gc
        self.quota = quota

    def filestorage_lines(self, path=None, blob_dir=None):
        """Keys of a `<filestorage>` for this storage (at another path/blob dir
        for the other backends of a RAID)."""
        out = ["path %s" % (path or self.path)]
        blob_dir = blob_dir or self.blob_dir
        if blob_dir:
            out.append("blob-dir %s" % blob_dir)
        if self.create:
            out.append("create true")
        if self.read_only:
            out.append("read-only true")
        if self.pack_gc is False:
            out.append("pack-gc false")
        if self.quota:
            out.append("quota %d" % self.quota)
        return out


def storage_files(path):
    """What a FileStorage at `path` may leave behind."""
    return [path + ext for ext in ("", ".old", ".tmp", ".lock", ".index", ".pack")]


def _ssl_section(text):
    """The test's `<ssl>` section, copied as written (ZConfig turns it into an
    SSLContext, which keeps no file names): certificate, key, authenticate."""
    import re
    match = re.search(r"<ssl>(.*?)</ssl>", text, re.S | re.I)
    if match is None:
        raise Unsupported("an <ssl> section the harness cannot find in the text")
    keys = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split()[0].lower()
        if key not in ("certificate", "key", "authenticate"):
            raise Unsupported("<ssl> key %r (zeoraid takes certificate, key, "
                              "authenticate; no password-function)" % key)
        keys.append("    " + line)
    return ["  <ssl>"] + keys + ["  </ssl>"]


def translate(text, cwd):
    """The test's ZConfig text → (`<zeo>` lines, (host, port), StorageSpec)."""
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
        lines.extend(_ssl_section(text))
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
    if stype == "filestorage":
        spec = StorageSpec(name, os.path.join(cwd, section.path),
                           create=bool(section.create),
                           read_only=bool(section.read_only),
                           pack_gc=section.pack_gc, quota=section.quota)
        blob_dir = blob_dir or section.blob_dir
    elif stype == "mappingstorage":
        spec = StorageSpec(name, os.path.join(
            cwd, "mapping-%d-%d.fs" % (os.getpid(), next(_counter))))
    else:
        raise Unsupported("server-side storage <%s> (a Python storage wrapper "
                          "zeoraid cannot load)" % stype)
    if blob_dir:
        spec.blob_dir = os.path.join(cwd, blob_dir)
    return lines, (host, port), spec


def _section(kind, name, lines, indent=""):
    body = "".join("%s  %s\n" % (indent, line) for line in lines)
    return "%s<%s %s>\n%s%s</%s>\n" % (indent, kind, name, body, indent, kind)


# How each server kind serves the test's storage. "zeoraid"/"runzeo": one
# process on it. "proxy": `zeoraid serve` with a `<zeoclient>` in front of a
# runzeo on it. "raidN-…": `zeoraid serve` with a `<raidstorage>` over N
# backends, "fs" embedded `<filestorage>`, "zeo" a `<zeoclient>` to a runzeo.
LAYOUTS = {
    "raid2-fs": ("fs", "fs"),
    "raid3-fs": ("fs", "fs", "fs"),
    "raid2-zeo": ("zeo", "zeo"),
    "raid3-zeo": ("zeo", "zeo", "zeo"),
    "raid2-mixed": ("fs", "zeo"),
    "raid3-mixed": ("zeo", "fs", "zeo"),
}
KINDS = ("zeoraid", "runzeo", "proxy") + tuple(LAYOUTS)


class Backend:
    """A runzeo behind the front zeoraid (proxy or RAID backend)."""

    def __init__(self, label, spec_lines):
        self.label = label
        self.port = free_port()
        self.config = "\n".join([
            "<zeo>", "  address 127.0.0.1:%d" % self.port,
            # As every Python backend of a zeoraid must (docs/raid.md).
            "  client-conflict-resolution true", "</zeo>", "",
            _section("filestorage", "1", spec_lines)])


def plan(kind, zeo_lines, spec):
    """(front config, [Backend], extra files and directories to remove at stop)."""
    zeo = "\n".join(zeo_lines) + "\n\n"
    if kind in ("zeoraid", "runzeo"):
        return (zeo + _section("filestorage", spec.name, spec.filestorage_lines()),
                [], storage_files(spec.path))
    if kind == "proxy":
        backend = Backend("proxy", spec.filestorage_lines())
        client = ["server 127.0.0.1:%d" % backend.port, "storage 1"]
        if spec.blob_dir:
            # The front reads the runzeo's blob directory directly, and a test
            # client that shares it with "the server" shares it with both.
            client += ["blob-dir %s" % spec.blob_dir, "shared-blob-dir true"]
        if spec.read_only:
            client.append("read-only true")
        return (zeo + _section("zeoclient", spec.name, client), [backend],
                storage_files(spec.path))
    layout = LAYOUTS[kind]
    backends, extra, sections = [], [], []
    for i, how in enumerate(layout):
        letter = "abc"[i]
        if i == 0:
            # The first backend holds the test's own files: a test that looks
            # at them, or a client sharing the blob directory, sees a backend.
            path, blob_dir = spec.path, spec.blob_dir
        else:
            path = "%s-%s" % (spec.path, letter)
            blob_dir = spec.blob_dir and "%s-%s" % (spec.blob_dir, letter)
            extra += storage_files(path)
            if blob_dir:
                extra.append(blob_dir)
        fs_lines = spec.filestorage_lines(path, blob_dir)
        if how == "fs":
            sections.append(_section("filestorage", letter, fs_lines, "  "))
            continue
        backend = Backend("%s-%s" % (kind, letter), fs_lines)
        backends.append(backend)
        client = ["server 127.0.0.1:%d" % backend.port, "storage 1"]
        if blob_dir and i == 0:
            client += ["blob-dir %s" % blob_dir, "shared-blob-dir true"]
        elif blob_dir:
            # A blob cache of its own: blobs go up and down the wire.
            client.append("blob-dir %s-cache" % blob_dir)
            extra.append(blob_dir + "-cache")
        if spec.read_only:
            client.append("read-only true")
        sections.append(_section("zeoclient", letter, client, "  "))
    raid = []
    if spec.blob_dir:
        # Clients that share the blob directory with the server write their
        # uploads into the first backend's blob directory and read from it.
        raid += ["  blob-dir %s" % spec.blob_dir, "  shared-blob-dir true"]
    if spec.read_only:
        raid.append("  read-only true")
    front = "<raidstorage %s>\n%s%s</raidstorage>\n" % (
        spec.name, "".join(line + "\n" for line in raid), "".join(sections))
    return zeo + front, backends, storage_files(spec.path) + extra


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
    if kind == "runzeo":
        return [sys.executable, "-m", "ZEO.runzeo", "-C", config_path]
    if kind in KINDS:
        return [zeoraid_bin(), "serve", "-C", config_path]
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


def _kill_together(procs, timeout):
    """`_kill` several processes, SIGTERMed at once."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        _kill(proc, timeout)


def kill_all():
    """Stop every server still running (session teardown, atexit)."""
    with _lock:
        procs = list(_running.values())
    _kill_together(procs, timeout=5)


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
    zeo_lines, addr, spec = translate(text, cwd)
    kind = KIND.value
    config, backends, files = plan(kind, zeo_lines, spec)
    procs = []   # backends first, the front last
    try:
        for backend in backends:
            procs.append(_spawn("runzeo", backend.label, backend.config, text, cwd))
        for backend, (proc, log_path) in zip(backends, procs):
            _wait_listening(proc, ("127.0.0.1", backend.port), log_path, start_timeout)
        front = _spawn(kind, kind, config, text, cwd)
        procs.append(front)
        _wait_listening(front[0], addr, front[1], start_timeout)
    except BaseException:
        for proc, _ in procs:
            _kill(proc, timeout=5)
        raise

    stopped = []

    def stop(stop_timeout=99):
        if stopped:
            return
        stopped.append(True)
        # The front first: its clients see it go, as with a single server;
        # then the backends, together.
        _kill(procs[-1][0], timeout=min(stop_timeout, 20))
        _kill_together([proc for proc, _ in procs[:-1]], timeout=min(stop_timeout, 20))
        if not keep:
            for p in files:
                if os.path.isdir(p):
                    shutil.rmtree(p, True)
                elif os.path.exists(p):
                    try:
                        os.remove(p)
                    except OSError:
                        pass

    stop.log_path = procs[-1][1]
    stop.proc = procs[-1][0]
    return addr, stop


class _ForkedServer:
    """A runzeo forked by the zygote: enough of `Popen` for this module (it is
    not our child, so there is no exit status)."""

    def __init__(self, pid, args):
        self.pid = pid
        self.args = args
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = "(unknown: forked by the zygote)"
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode


_zygote_proc = []
_zygote_lock = threading.Lock()


def _fork_runzeo(config_path, log_path, cwd):
    """Start a runzeo through runzeo_zygote.py → _ForkedServer, or None when
    no zygote can be had (it is started from the main thread only, so that
    its PR_SET_PDEATHSIG follows the test process, not a test's thread)."""
    with _zygote_lock:
        if not _zygote_proc:
            if threading.current_thread() is not threading.main_thread():
                return None
            _zygote_proc.append(subprocess.Popen(
                [sys.executable, os.path.join(os.path.dirname(__file__), "runzeo_zygote.py")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                preexec_fn=_preexec))
            atexit.register(_stop_zygote)
        zygote = _zygote_proc[0]
        if zygote.poll() is not None:
            return None
        zygote.stdin.write(json.dumps(
            {"config": config_path, "log": log_path, "cwd": cwd}) + "\n")
        zygote.stdin.flush()
        line = zygote.stdout.readline()
    if not line.strip():
        return None
    return _ForkedServer(int(line), ["runzeo (forked)", "-C", config_path])


def _stop_zygote():
    for zygote in _zygote_proc:
        if zygote.poll() is None:
            zygote.kill()
            zygote.wait(5)


def _spawn(kind, label, config, text, cwd):
    """Start one server process on `config` in `cwd` → (Popen, log path)."""
    n = next(_counter)
    config_path = os.path.join(logdir(), "%s-%d.conf" % (label, n))
    with open(config_path, "w") as f:
        f.write(config)
    log_path = os.path.join(logdir(), "%s-%d.log" % (label, n))
    env = dict(os.environ)
    env.setdefault("ZEORAID_LOG", "info")
    env.setdefault("NO_COLOR", "1")
    with open(log_path, "ab") as logf:
        logf.write(("# test %s\n# cwd %s\n# %s\n%s\n" % (
            KIND.test, cwd, text.replace("\n", "\n# "), config))
                   .encode())
        logf.flush()
        proc = None
        if kind == "runzeo" and label != "runzeo":
            # Backends: many per test, started the quick way.
            proc = _fork_runzeo(config_path, log_path, cwd)
        proc = proc or subprocess.Popen(
            _command(kind, config_path), stdout=logf, stderr=logf,
            stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            preexec_fn=_preexec if threading.current_thread() is threading.main_thread()
            else os.setsid)
    with _lock:
        _running[proc.pid] = proc
    return proc, log_path


_installed = []


def install():
    """Route ZEO's test server starts through `start_zeo_server` (idempotent)."""
    if _installed:
        return
    import ZEO.tests.forker
    _installed.append(ZEO.tests.forker.start_zeo_server)
    ZEO.tests.forker.start_zeo_server = start_zeo_server
