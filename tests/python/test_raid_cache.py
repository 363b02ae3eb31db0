"""The object cache of a RAID's `<zeoclient>` backends (`cache-size`), seen from
outside: real ZEO ClientStorages load through `zeoraid serve` over two real
`runzeo` backends; repeated loads are answered by zeoraid's caches, new commits
are never hidden by them, and `/metrics` and `/details` show the caches.
"""
import json
import urllib.request

import transaction
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage

from raidprocs import client_db, runzeo_section, filestorage_section
from test_raid_faults import raid_server, runzeo  # noqa: F401 (fixtures)


def metrics(raid):
    with urllib.request.urlopen(raid.admin + "/metrics", timeout=30) as resp:
        return resp.read().decode()


def samples(text, name):
    """{backend: value} of the metric `name` for storage 1."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + '{storage="1",backend="'):
            backend = line.split('backend="', 1)[1].split('"', 1)[0]
            out[backend] = float(line.rsplit(" ", 1)[1])
    return out


def load_in_new_client(addr, oid):
    """`ClientStorage.load` (a load of the current revision) from a client with
    an empty cache of its own, so that the load reaches zeoraid."""
    storage = ClientStorage(addr, wait_timeout=30)
    try:
        return storage.load(oid)
    finally:
        storage.close()


def test_repeated_loads_are_answered_by_the_backends_caches(runzeo, raid_server, tmp_path):
    a, b = runzeo("a"), runzeo("b")
    raid = raid_server([runzeo_section("a", a, "10s"),
                        runzeo_section("b", b, "10s"),
                        filestorage_section("c", tmp_path / "c" / "Data.fs")])
    db = client_db(raid.addr)
    try:
        conn = db.open()
        conn.root()["doc"] = doc = PersistentMapping(version=1)
        transaction.commit()
        oid, first = doc._p_oid, doc._p_serial

        # Round-robin spreads the loads over a, b and c; which of them each load
        # reaches depends on the other reads of a connecting client and on the
        # server thread that serves it (each thread keeps its own turn), so a
        # few runs of loads may all land on c: load until a runzeo backend has
        # seen the object twice (at most 30 loads). A runzeo backend's first
        # load of the object is a miss, its later ones hits.
        for attempt in range(30):
            data, serial = load_in_new_client(raid.addr, oid)
            assert serial == first
            text = metrics(raid)
            hits = samples(text, "zeoraid_backend_cache_hits_total")
            if attempt >= 5 and sum(hits.values()) >= 1:
                break
        misses = samples(text, "zeoraid_backend_cache_misses_total")
        cached = samples(text, "zeoraid_backend_cache_bytes")
        assert set(hits) == set(misses) == set(cached) == {"a", "b"}, text
        assert sum(misses.values()) >= 1, text
        assert sum(hits.values()) >= 1, text
        assert max(cached.values()) > 0, text

        # A new commit ends the cached revision: every later load sees it.
        doc["version"] = 2
        transaction.commit()
        second = doc._p_serial
        assert second > first
        for _ in range(6):
            data, serial = load_in_new_client(raid.addr, oid)
            assert serial == second

        with urllib.request.urlopen(raid.admin + "/details", timeout=30) as resp:
            details = json.loads(resp.read())
        backends = {b["name"]: b for s in details["storages"] for b in s["backends"]}
        assert backends["a"]["counters"]["cache"]["capacity"] == 20 * 1024 * 1024
        assert "cache" not in backends["c"]["counters"]
    finally:
        db.close()
