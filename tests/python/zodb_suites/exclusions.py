"""What of ZODB's/ZEO's suites is not run against an external server, and why.

Keys: "Class.method" (Class is the upstream class or suite name, e.g.
FileStorageTests, ClientStorageSharedBlobs; method the upstream method or
doctest name, e.g. checkSortKey, blob_transaction_txt), "Class.*" for a whole
class, "*.method" for a method in every class. docs/compatibility.md repeats
these lists; keep both in step.

EXCLUDED: cannot work against an external server process, or fails against
runzeo too (with `client-conflict-resolution true`, zeoraid's only mode). Never
used for a test that passes on runzeo and fails on zeoraid: that is a zeoraid
bug and goes to XFAIL (strict) until fixed.
"""
import os

# Upstream classes and suites not built at all (see docs/compatibility.md).
NOT_RUN = {
    "testZEO.FileStorageHexTests, FileStorageClientHexTests":
        "need the server-side Python storage wrappers <hexstorage>/"
        "<serverhexstorage> (ZODB.tests.hexstorage), which zeoraid cannot load",
    "testZEO.FileStorageLoadDelayedTests":
        "needs the server-side Python wrapper <loaddelayed_storage> (ZEO.tests)",
    "testZEO.FileStorageSSLTests, testConnection.SSLConnectionTests":
        "ZEO's test client certificate (ZEO/tests/client.pem) is self-signed and "
        "used as its own CA; zeoraid's webpki verifier refuses that "
        "(docs/zeo-server.md, TLS)",
    "testZEO.MappingStorageTests, DemoStorageTests, testConnection."
    "MappingStorageConnectionTests, MappingStorageTimeoutTests":
        "zeoraid serves only FileStorage; the same GenericTests/ConnectionTests/"
        "TimeoutTests run in the FileStorage classes",
    "testZEO doctests (multiple_storages_invalidation_queue_is_not_insane, "
    "getInvalidationsAfterServerRestart, tpc_finish_error, test_server_status, "
    "test_ruok, client_labels, runzeo_*, …), testZEO2, testZEOServer, "
    "testZEOOptions, zdoptions.test, protocols.test, nagios.rst, "
    "dynamic_server_ports.test, MultiprocessingTests":
        "drive ZEO.StorageServer/ZEO.runzeo objects in-process (ZEO.server(), "
        "StorageServerWrapper, server logs and internals) or test ZEO 4 protocols",
    "test_client_side_conflict_resolution":
        "builds ZEO.StorageServer in-process to compare server- and client-side "
        "resolution",
}

_UNDO_RESOLUTION = (
    "undo's conflict resolution runs on the server (FileStorage.undo calls "
    "tryToResolveConflict, which needs the application's classes); with "
    "client-conflict-resolution true it fails on runzeo too, and zeoraid never "
    "resolves on the server")

EXCLUDED = {
    "*.testUndoConflictResolution": _UNDO_RESOLUTION,
    "*.testUndoMultipleConflictResolution": _UNDO_RESOLUTION,
    "*.testUndoMultipleConflictResolutionReversed": _UNDO_RESOLUTION,
    "FileStorageTimeoutTests.checkTimeout":
        "reads the Python server's server.log for 'CRITICAL ZEO.StorageServer'; "
        "the timeout itself is covered by checkTimeoutAfterVote/OnAbort*",
    "ZRPCConnectionTests.checkExceptionLogsAtError":
        "expects MappingStorage's POSKeyError for history(None, None); on a "
        "FileStorage (both servers) that is a TypeError",
}

if hasattr(os, "geteuid") and os.geteuid() == 0:
    _ROOT = ("checks that a committed blob file cannot be opened for writing; "
             "root can (fails on runzeo too when run as root)")
    EXCLUDED["ClientStorageNonSharedBlobs.blob_transaction_txt"] = _ROOT
    EXCLUDED["ClientStorageSharedBlobs.blob_transaction_txt"] = _ROOT

# zeoraid bugs not fixed yet: strict xfail on the zeoraid side only.
XFAIL = {
}


def lookup(table, cls_name, method):
    for key in ("%s.%s" % (cls_name, method), "%s.*" % cls_name, "*.%s" % method):
        if key in table:
            return table[key]
    return None
