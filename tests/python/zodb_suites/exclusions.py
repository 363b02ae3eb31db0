"""What of ZODB's/ZEO's suites is not run against an external server, and why.

Keys: "Class.method" (Class is the upstream class or suite name, e.g.
FileStorageTests, ClientStorageSharedBlobs; method the upstream method or
doctest name, e.g. checkSortKey, blob_transaction_txt), "Class.*" for a whole
class, "*.method" for a method in every class; "kind,kind:Class.method" (kinds
as in harness.KINDS, shell patterns allowed: "raid*:…") limits an entry to
those server kinds. docs/compatibility.md repeats these lists; keep both in
step.

EXCLUDED: cannot work against an external server process, or fails against
runzeo too (with `client-conflict-resolution true`, zeoraid's only mode). Never
used for a test that passes on runzeo and fails on zeoraid: that is a zeoraid
bug and goes to XFAIL (strict) until fixed.
"""
import fnmatch
import os

# Upstream classes and suites not built at all (see docs/compatibility.md).
NOT_RUN = {
    "testZEO.FileStorageHexTests, FileStorageClientHexTests":
        "need the server-side Python storage wrappers <hexstorage>/"
        "<serverhexstorage> (ZODB.tests.hexstorage), which zeoraid cannot load",
    "testZEO.FileStorageLoadDelayedTests":
        "needs the server-side Python wrapper <loaddelayed_storage> (ZEO.tests)",
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
    "proxy,raid*:FileStorageConnectionTests.checkConcurrentLargeUpdates":
        "fails on runzeo with client-conflict-resolution true (see "
        "docs/compatibility.md); through the proxy every vote of its three "
        "threads was seen to give up after 9 conflict rounds (each round is a "
        "whole backend transaction) for over 4 minutes, against upstream's "
        "MAXTIME of 300 s",
    "ZRPCConnectionTests.checkExceptionLogsAtError":
        "expects MappingStorage's POSKeyError for history(None, None); on a "
        "FileStorage (both servers) that is a TypeError",
}

if hasattr(os, "geteuid") and os.geteuid() == 0:
    _ROOT = ("checks that a committed blob file cannot be opened for writing; "
             "root can (fails on runzeo too when run as root)")
    EXCLUDED["ClientStorageNonSharedBlobs.blob_transaction_txt"] = _ROOT
    EXCLUDED["ClientStorageSharedBlobs.blob_transaction_txt"] = _ROOT

# zeoraid bugs not fixed yet: strict xfail for every kind but runzeo.
XFAIL = {
}


def lookup(table, cls_name, method, kind=None):
    """The entry for this test; a key may be limited to server kinds with a
    prefix: "raid2-zeo,raid3-zeo:Class.method", "raid*:Class.method"."""
    keys = ("%s.%s" % (cls_name, method), "%s.*" % cls_name, "*.%s" % method)
    for key, value in table.items():
        kinds, sep, rest = key.rpartition(":")
        if sep and rest in keys and kind is not None and any(
                fnmatch.fnmatchcase(kind, k.strip()) for k in kinds.split(",")):
            return value
    for key in keys:
        if key in table:
            return table[key]
    return None
