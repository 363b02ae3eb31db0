"""Group commit with real ZEO clients: many client processes committing at once
to `zeoraid serve` (the commit lock is released before each commit's fsync) all
get their commits acknowledged, and ZEO's client cache never sees an acknowledged
tid older than an invalidation it already received (ZEO's `ClientCache.setLastTid`
raises "new last tid ... must be greater than previous one" otherwise).
"""

import subprocess
import sys
import time

import ZODB
import ZODB.FileStorage
import ZODB.scripts.fstest
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage

CLIENTS = 8
COMMITS = 50

# One committer process: waits for the common start time, then commits to its
# own object back to back; prints the acknowledged tids (hex), one a line.
COMMITTER = """
import sys, time
import transaction, ZODB
from ZEO.ClientStorage import ClientStorage
host, port, name, commits, start = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
db = ZODB.DB(ClientStorage((host, port), wait_timeout=30))
conn = db.open()
obj = conn.root()[name]
time.sleep(max(0.0, start - time.time()))
for i in range(commits):
    obj["count"] = i + 1
    transaction.commit()
    print(obj._p_serial.hex(), flush=True)
conn.close()
db.close()
"""


def client_db(addr):
    return ZODB.DB(ClientStorage(addr, wait_timeout=30))


def test_concurrent_python_committers_all_acknowledged_in_order(zeo_server):
    server = zeo_server(blobs=False)
    db = client_db(server.addr)
    with db.transaction() as conn:
        for n in range(CLIENTS):
            conn.root()["c%d" % n] = PersistentMapping(count=0)
    db.close()

    start = time.time() + 3
    procs = [subprocess.Popen(
        [sys.executable, "-c", COMMITTER, server.host, str(server.port), "c%d" % n,
         str(COMMITS), repr(start)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(CLIENTS)]
    tids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        mine = [bytes.fromhex(line) for line in out.split()]
        assert len(mine) == COMMITS
        assert mine == sorted(mine)
        tids.extend(mine)
    assert len(set(tids)) == len(tids), "every commit has its own tid"

    db = client_db(server.addr)
    with db.transaction() as conn:
        for n in range(CLIENTS):
            assert conn.root()["c%d" % n]["count"] == COMMITS
    last = db.storage.lastTransaction()
    db.close()
    assert last == max(tids)
    server.stop()
    data_fs = str(server.workdir / "Data.fs")
    ZODB.scripts.fstest.check(data_fs)
    storage = ZODB.FileStorage.FileStorage(data_fs, read_only=True)
    try:
        written = {t.tid for t in storage.iterator()}
    finally:
        storage.close()
    assert set(tids) <= written
