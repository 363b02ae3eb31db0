"""Test classes built from ZODB's and ZEO's own suites, one set per server kind.

`make_class(kind, name, base)` builds a unittest class per upstream class,
named `<Kind><UpstreamName>` (test_zodb_suites.py puts them in its globals), whose
`check*` methods are also exposed as `test_check*` (pytest collects only
`test*`), with exclusions and xfails from `exclusions` applied, and for the
doctest-based suites (blob suites, IExternalGC, IterationTests) pytest test
functions that run each doctest (`doctest_cases`, `run_case`).
"""
import functools
import os
import sys
import threading
import time
import unittest

import pytest
import ZEO.tests.forker  # noqa: F401  (must be imported before install())

from . import exclusions
from . import harness

harness.install()

from ZODB.tests import BasicStorage  # noqa: E402
from ZODB.tests import ConflictResolution  # noqa: E402
from ZODB.tests import HistoryStorage  # noqa: E402
from ZODB.tests import IteratorStorage  # noqa: E402
from ZODB.tests import MTStorage  # noqa: E402
from ZODB.tests import PackableStorage  # noqa: E402
from ZODB.tests import PersistentStorage  # noqa: E402
from ZODB.tests import ReadOnlyStorage  # noqa: E402
from ZODB.tests import RevisionStorage  # noqa: E402
from ZODB.tests import Synchronization  # noqa: E402
from ZODB.tests import TransactionalUndoStorage  # noqa: E402
from ZEO.tests import ConnectionTests  # noqa: E402
from ZEO.tests import testConnection  # noqa: E402
from ZEO.tests import testZEO  # noqa: E402

FULL = bool(os.environ.get("ZEORAID_FULL_SUITES"))


class ServerKind:
    """Mixin: tell the harness which server this test's servers are."""

    server_kind = "zeoraid"

    def setUp(self, *args, **kw):
        harness.KIND.value = self.server_kind
        harness.KIND.test = self.id()
        super().setUp(*args, **kw)

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            harness.kill_all()


class FileStorageTests(testZEO.FileStorageTests,
                       HistoryStorage.HistoryStorage,
                       PersistentStorage.PersistentStorage):
    """testZEO.FileStorageTests plus ZODB's History and Persistent mixins
    (ZEO's class leaves them out)."""


class StorageMixinTests(testZEO.GenericTestBase,
                        BasicStorage.BasicStorage,
                        RevisionStorage.RevisionStorage,
                        HistoryStorage.HistoryStorage,
                        IteratorStorage.IteratorStorage,
                        MTStorage.MTStorage,
                        PackableStorage.PackableStorage,
                        PackableStorage.PackableUndoStorage,
                        Synchronization.SynchronizedStorage,
                        ConflictResolution.ConflictResolvingStorage,
                        ConflictResolution.ConflictResolvingTransUndoStorage,
                        TransactionalUndoStorage.TransactionalUndoStorage,
                        ReadOnlyStorage.ReadOnlyStorage,
                        PersistentStorage.PersistentStorage):
    """ZODB's storage mixins only, through a ClientStorage on a FileStorage
    server: FileStorageTests without ZEO's own mixins (CommitLock, Thread,
    MiscZEO, Cache, IterationTests)."""

    getConfig = testZEO.FileStorageTests.getConfig
    open = testZEO.GenericTests.open                 # for ReadOnlyStorage
    checkWriteMethods = testZEO.GenericTests.checkWriteMethods

    def testPackUndoLog(self):
        # As FullGenericTests: the time.time patch of ZODB's version cannot
        # reach the server process; checkPackUndoLog runs it unpatched.
        pass

    def checkPackUndoLog(self):
        PackableStorage.PackableUndoStorage.testPackUndoLog.__wrapped__(self)


class FileStorageSSLConnectionTests(testConnection.FileStorageConfig,
                                    ConnectionTests.SSLConnectionTests):
    """testConnection.SSLConnectionTests (ZEO's own self-signed test
    certificates) on a FileStorage instead of MappingStorage."""


# The storage mixins (the requirement for the RAID variants).
STORAGE_CLASSES = {
    "StorageMixinTests": StorageMixinTests,
    "FileStorageRecoveryTests": testZEO.FileStorageRecoveryTests,
}

# upstream name -> class: everything that can run against an external server.
CLASSES = {
    "FileStorageTests": FileStorageTests,
    "BlobAdaptedFileStorageTests": testZEO.BlobAdaptedFileStorageTests,
    "BlobWritableCacheTests": testZEO.BlobWritableCacheTests,
    "ClientConflictResolutionTests": testZEO.ClientConflictResolutionTests,
    "FileStorageRecoveryTests": testZEO.FileStorageRecoveryTests,
    "ZRPCConnectionTests": testZEO.ZRPCConnectionTests,
    "FileStorageConnectionTests": testConnection.FileStorageConnectionTests,
    "FileStorageReconnectionTests": testConnection.FileStorageReconnectionTests,
    "FileStorageInvqTests": testConnection.FileStorageInvqTests,
    "FileStorageTimeoutTests": testConnection.FileStorageTimeoutTests,
    "FileStorageSSLTests": testZEO.FileStorageSSLTests,
    "FileStorageSSLConnectionTests": FileStorageSSLConnectionTests,
}

# Only with ZEORAID_FULL_SUITES=1 (slow ones; none at the moment).
SLOW_CLASSES = {}


def _test_names(cls):
    names = []
    for name in dir(cls):
        if name.startswith("check") or name.startswith("test"):
            if callable(getattr(cls, name, None)):
                names.append(name)
    return sorted(names)


def _skipped(reason):
    def skipped(self):
        raise unittest.SkipTest(reason)
    return skipped


def _xfail(func, reason):
    @functools.wraps(func)
    def wrapper(self):
        return func(self)
    wrapper.pytestmark = [pytest.mark.xfail(strict=True, reason=reason)]
    return wrapper


LONG_TEST_SKIPPED = (
    "upstream long test (level 2: zope.testrunner's default level 1 leaves it "
    "out too); runs against zeoraid by default, against every kind with "
    "ZEORAID_FULL_SUITES=1")


def make_class(kind, upstream_name, base, long_tests=True):
    """`long_tests=False` skips upstream's level-2 tests (util.long_test)."""
    attrs = {"server_kind": kind, "__module__": None}
    for name in _test_names(base):
        func = getattr(base, name)
        reason = exclusions.lookup(exclusions.EXCLUDED, upstream_name, name, kind)
        if not reason and not long_tests and getattr(func, "level", 1) > 1:
            reason = LONG_TEST_SKIPPED
        if reason:
            func = _skipped(reason)
        elif kind != "runzeo":
            bug = exclusions.lookup(exclusions.XFAIL, upstream_name, name, kind)
            if bug:
                func = _xfail(func, bug)
        test_name = name if name.startswith("test") else "test_" + name
        attrs[test_name] = func
        if test_name != name:
            attrs[name] = func
    return type(class_prefix(kind) + upstream_name, (ServerKind, base), attrs)


def class_prefix(kind):
    """"raid2-fs" → "Raid2Fs"."""
    return "".join(part.capitalize() for part in kind.split("-"))


# ------------------------------------------------------------------ doctest-style suites

def _doctest_suites():
    """upstream name -> unittest suite (built lazily: they create test objects)."""
    import re
    import doctest
    import zope.testing.setupstack
    from zope.testing import renormalizing
    import ZEO.tests.IterationTests
    import ZODB.tests.testblob
    return {
        "ClientStorageNonSharedBlobs": ZODB.tests.testblob.storage_reusable_suite(
            "ClientStorageNonSharedBlobs", testZEO.ServerManagingClientStorage),
        "ClientStorageSharedBlobs": ZODB.tests.testblob.storage_reusable_suite(
            "ClientStorageSharedBlobs", testZEO.create_storage_shared),
        "IExternalGC": PackableStorage.IExternalGC_suite(
            lambda: testZEO.ServerManagingClientStorageForIExternalGCTest(
                'data.fs', 'blobs', extrafsoptions='pack-gc false')),
        "IterationTests": doctest.DocTestSuite(
            ZEO.tests.IterationTests,
            setUp=ZEO.tests.forker.setUp, tearDown=zope.testing.setupstack.tearDown,
            checker=renormalizing.RENormalizing((
                (re.compile("ZEO.Exceptions.ClientDisconnected"),
                 "ClientDisconnected"),
            ))),
    }


def _flatten(suite, layer=None):
    layer = getattr(suite, "layer", layer)
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _flatten(test, layer)
        else:
            yield test, layer


def doctest_cases():
    """[(pytest id, upstream name, short test name, test, layer)]."""
    cases = []
    for upstream, suite in _doctest_suites().items():
        for test, layer in _flatten(suite):
            short = test.id().split(".")[-1]
            cases.append((upstream + "." + short, upstream, short, test, layer))
    return cases


def run_case(kind, upstream, short, test, layer):
    """Run one unittest/doctest case from inside a pytest test."""
    reason = exclusions.lookup(exclusions.EXCLUDED, upstream, short, kind)
    if reason:
        pytest.skip(reason)
    # XFAIL entries are applied as strict pytest marks by the caller.
    harness.KIND.value = kind
    harness.KIND.test = test.id()
    result = unittest.TestResult()
    here = os.getcwd()
    if layer is not None and hasattr(layer, "testSetUp"):
        layer.testSetUp()
    try:
        test(result)
    finally:
        if layer is not None and hasattr(layer, "testTearDown"):
            layer.testTearDown()
        os.chdir(here)
        harness.kill_all()
    for _, reason in result.skipped:
        pytest.skip(reason)
    problems = result.errors + result.failures
    if problems:
        pytest.fail("\n".join(tb for _, tb in problems), pytrace=False)


def release_stuck_threads(grace=10.0):
    """Non-daemon threads a failed test left blocked (e.g. MTStorage's
    StorageClientThread waiting for a reply that never comes) would keep the
    interpreter from exiting. Give them `grace` seconds, then tell the
    interpreter not to wait for them at exit (CPython 3.11/3.12 internals;
    elsewhere they are only reported)."""
    deadline = time.time() + grace
    stuck = []
    for t in threading.enumerate():
        if t is threading.current_thread() or t is threading.main_thread() or t.daemon:
            continue
        t.join(max(0.0, deadline - time.time()))
        if t.is_alive():
            stuck.append(t)
    for t in stuck:
        print("zodb_suites: thread %r still running after the tests; not waiting "
              "for it at exit" % t.name, file=sys.stderr)
        lock = getattr(t, "_tstate_lock", None)
        locks = getattr(threading, "_shutdown_locks", None)
        guard = getattr(threading, "_shutdown_locks_lock", None)
        if lock is not None and locks is not None and guard is not None:
            with guard:
                locks.discard(lock)
