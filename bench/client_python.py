"""Python's ZEO ClientStorage on its own (no ZODB.DB), driven by `zeoraid-bench client`
over stdin/stdout, for a like-for-like comparison with zeoraid's Rust `ZeoClient`.

    python bench/client_python.py --addr 127.0.0.1:8100 --oids 1:10000

Connects one `ZEO.ClientStorage`, prints `{"ready": true}` and answers one JSON
line per command read from stdin:

  load SECONDS THREADS   cold loads: ClientStorage.loadBefore(oid, maxtid) on the
                         preloaded oids (a shuffled cycle; the client cache is
                         cleared first and whenever the cycle wraps, so every load
                         is a server round trip), from THREADS threads sharing the
                         one ClientStorage
  commit SECONDS         small transactions on the storage API: tpc_begin,
                         store (one 100-byte record of an object of its own),
                         tpc_vote, tpc_finish
  quit

Each answer: {"ops": N, "elapsed": s, "lat_us": [...], "cpu": s} (cpu: this
process's user+system seconds during the phase, every thread included).
"""
import argparse
import json
import os
import random
import sys
import threading
import time

from ZEO.ClientStorage import ClientStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import maxtid, p64, z64


def cpu():
    t = os.times()
    return t.user + t.system


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Loads:
    """A shuffled cycle over the preloaded oids, shared by the load threads."""

    def __init__(self, storage, oids):
        self.storage = storage
        self.oids = oids
        self.cursor = 0
        self.lock = threading.Lock()

    def next_oid(self):
        with self.lock:
            if self.cursor >= len(self.oids):
                self.cursor = 0
                self.storage._cache.clear()
            oid = self.oids[self.cursor]
            self.cursor += 1
            return oid

    def run(self, end, lat):
        while True:
            start = time.perf_counter()
            if start >= end:
                return
            self.storage.loadBefore(self.next_oid(), maxtid)
            lat.append(time.perf_counter() - start)


def commit_loop(storage, oid, serial, end, lat):
    data = b"c" * 100
    while True:
        start = time.perf_counter()
        if start >= end:
            return serial
        t = TransactionMetaData(user="bench", description="zeoraid-bench")
        storage.tpc_begin(t)
        storage.store(oid, serial, data, "", t)
        storage.tpc_vote(t)
        serial = storage.tpc_finish(t)
        lat.append(time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--oids", required=True, help="FIRST:COUNT of preloaded oids")
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    storage = ClientStorage((host, int(port)), wait=True, wait_timeout=60)
    first, count = (int(x) for x in args.oids.split(":"))
    oids = [p64(first + i) for i in range(count)]
    random.Random(1).shuffle(oids)
    loads = Loads(storage, oids)
    own_oid = storage.new_oid()
    serial = z64

    reply({"ready": True})
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        cmd, seconds = parts[0], float(parts[1])
        c0 = cpu()
        t0 = time.perf_counter()
        end = t0 + seconds
        if cmd == "load":
            threads = int(parts[2]) if len(parts) > 2 else 1
            storage._cache.clear()
            lats = [[] for _ in range(threads)]
            workers = [threading.Thread(target=loads.run, args=(end, lat)) for lat in lats]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            lat = [x for part in lats for x in part]
        elif cmd == "commit":
            lat = []
            serial = commit_loop(storage, own_oid, serial, end, lat)
        else:
            reply({"error": "unknown command %r" % cmd})
            continue
        elapsed = time.perf_counter() - t0
        reply({"ops": len(lat), "elapsed": elapsed, "cpu": cpu() - c0,
               "lat_us": [int(x * 1e6) for x in lat]})
    storage.close()


if __name__ == "__main__":
    main()
