"""One real ZODB/ZEO client process, driven by `zeoraid-bench server` over stdin/stdout.

    python bench/zodb_client.py --addr 127.0.0.1:8100 --index 3 --oids 1:10000

Connects (ZEO.ClientStorage + ZODB.DB), creates one small persistent object of
its own (so concurrent clients never conflict), prints `{"ready": true}` and then
answers one JSON line per command read from stdin:

  commit SECONDS  small transactions (one object changed: obj.n += 1, a 100-byte
                  payload) with transaction.commit(), for SECONDS; the latency of
                  each commit() (tpc_begin, store, vote, tpc_finish round trips)
  load SECONDS    cold loads: ClientStorage.loadBefore(oid, maxtid) on the
                  preloaded oids (a shuffled cycle), clearing the client cache
                  first and whenever the cycle wraps, so every load goes to the server
  quit

Each answer: {"ops": N, "elapsed": s, "lat_us": [...], "cpu": s} (cpu: this
process's user+system seconds during the phase).
"""
import argparse
import json
import os
import random
import sys
import time

import transaction
import ZODB
import ZODB.POSException
from persistent import Persistent
from ZEO.ClientStorage import ClientStorage
from ZODB.utils import maxtid, p64


class Counter(Persistent):
    def __init__(self):
        self.n = 0
        self.payload = b"x" * 100


def cpu():
    t = os.times()
    return t.user + t.system


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def open_db(storage):
    # The first client on a fresh storage creates the root; concurrent first
    # clients may conflict doing so: retry.
    for attempt in range(20):
        try:
            return ZODB.DB(storage, cache_size=1000)
        except ZODB.POSException.ConflictError:
            transaction.abort()
            time.sleep(0.05 * (attempt + 1))
    return ZODB.DB(storage, cache_size=1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--oids", default="", help="FIRST:COUNT of preloaded oids")
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    storage = ClientStorage((host, int(port)), wait=True, wait_timeout=60)
    db = open_db(storage)
    conn = db.open()
    obj = Counter()
    conn.add(obj)
    transaction.commit()

    oids = []
    if args.oids:
        first, count = (int(x) for x in args.oids.split(":"))
        oids = [p64(first + i) for i in range(count)]
        random.Random(args.index).shuffle(oids)
    cursor = 0

    reply({"ready": True})
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        cmd, seconds = parts[0], float(parts[1])
        lat = []
        c0 = cpu()
        t0 = time.perf_counter()
        end = t0 + seconds
        if cmd == "commit":
            while True:
                start = time.perf_counter()
                if start >= end:
                    break
                obj.n += 1
                transaction.commit()
                lat.append(time.perf_counter() - start)
        elif cmd == "load":
            storage._cache.clear()
            while True:
                start = time.perf_counter()
                if start >= end:
                    break
                if cursor >= len(oids):
                    cursor = 0
                    storage._cache.clear()
                storage.loadBefore(oids[cursor], maxtid)
                cursor += 1
                lat.append(time.perf_counter() - start)
        else:
            reply({"error": "unknown command %r" % cmd})
            continue
        elapsed = time.perf_counter() - t0
        reply({"ops": len(lat), "elapsed": elapsed, "cpu": cpu() - c0,
               "lat_us": [int(x * 1e6) for x in lat]})
    conn.close()
    db.close()


if __name__ == "__main__":
    main()
