"""Python's FileStorage in-process, the reference side of `zeoraid-bench filestorage`.

    python bench/fs_python.py generate PATH --size BYTES   # write the test Data.fs
    python bench/fs_python.py open PATH [--no-index]        # time FileStorage(PATH, read_only=True)
    python bench/fs_python.py loads PATH --max-oid M        # stdin: "N" per line → N loads
    python bench/fs_python.py commits PATH --count N        # fresh file, N one-object commits

Each prints one JSON line. `generate` writes transactions of 200 records (100–900
bytes each): first it creates `objects` objects (oids 1..objects), then it updates
random ones until the file is `size` bytes, so objects have several revisions;
closing saves Python's `Data.fs.index`. `open --no-index` moves that index aside
for the measurement (Python then scans the whole file, and saves a new index as
its constructor does) and puts it back.
"""
import argparse
import json
import os
import random
import sys
import time

from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.utils import maxtid, p64, z64

TXN_RECORDS = 200


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def commit(fs, stores):
    t = TransactionMetaData(user="bench", description="generate")
    fs.tpc_begin(t)
    for oid, serial, data in stores:
        fs.store(p64(oid), serial, data, '', t)
    fs.tpc_vote(t)
    return fs.tpc_finish(t)


def generate(args):
    rng = random.Random(args.seed)
    fs = FileStorage(args.path, create=True)
    objects = args.objects or max(TXN_RECORDS, args.size // 3000)
    blobs = [bytes([65 + i % 26]) * 1000 for i in range(26)]
    serials = {}
    txns = 0
    oid = 1
    while True:
        if oid <= objects:
            batch = list(range(oid, min(oid + TXN_RECORDS, objects + 1)))
            oid += len(batch)
        else:
            if fs.getSize() >= args.size:
                break
            batch = rng.sample(range(1, objects + 1), TXN_RECORDS)
        stores = [(o, serials.get(o, z64), blobs[o % 26][:rng.randint(100, 900)])
                  for o in batch]
        tid = commit(fs, stores)
        for o in batch:
            serials[o] = tid
        txns += 1
    size = fs.getSize()
    fs.close()
    out({"objects": objects, "transactions": txns, "size": size})


def open_(args):
    index = args.path + ".index"
    aside = index + ".bench-aside"
    if args.no_index and os.path.exists(index):
        os.rename(index, aside)
    try:
        t0 = time.perf_counter()
        fs = FileStorage(args.path, read_only=True)
        elapsed = time.perf_counter() - t0
        n = len(fs)
        fs.close()
    finally:
        if os.path.exists(aside):
            os.replace(aside, index)
    out({"elapsed": elapsed, "objects": n})


def loads(args):
    """Answer each stdin line "N" with the time of N random loadBefore calls.

    The storage stays open and the random sequence goes on from slice to slice,
    so the benchmark can interleave short slices of ours and Python's loads and
    both sides see the same background load. `cpu` is the thread's CPU time
    (the scheduler's run time, like /proc/thread-self/schedstat on the Rust side).
    """
    fs = FileStorage(args.path, read_only=True)
    rng = random.Random(args.seed)
    out({"ready": True})
    for line in sys.stdin:
        line = line.strip()
        if not line or line == "quit":
            break
        oids = [p64(rng.randint(1, args.max_oid)) for _ in range(int(line))]
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        for oid in oids:
            fs.loadBefore(oid, maxtid)
        elapsed = time.perf_counter() - t0
        cpu = time.thread_time() - cpu0
        out({"ops": len(oids), "elapsed": elapsed, "cpu": cpu})
    fs.close()


def commits(args):
    fs = FileStorage(args.path, create=True)
    serial = z64
    data = b"c" * 100
    lat = []
    t0 = time.perf_counter()
    for _ in range(args.count):
        s = time.perf_counter()
        serial = commit(fs, [(1, serial, data)])
        lat.append(time.perf_counter() - s)
    elapsed = time.perf_counter() - t0
    fs.close()
    out({"ops": len(lat), "elapsed": elapsed, "lat_us": [int(x * 1e6) for x in lat]})


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("path")
    g.add_argument("--size", type=int, required=True)
    g.add_argument("--objects", type=int, default=0)
    g.add_argument("--seed", type=int, default=1)
    o = sub.add_parser("open")
    o.add_argument("path")
    o.add_argument("--no-index", action="store_true")
    lo = sub.add_parser("loads")
    lo.add_argument("path")
    lo.add_argument("--max-oid", type=int, required=True)
    lo.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("commits")
    c.add_argument("path")
    c.add_argument("--count", type=int, required=True)
    args = ap.parse_args()
    {"generate": generate, "open": open_, "loads": loads, "commits": commits}[args.cmd](args)


if __name__ == "__main__":
    main()
