"""Data.fs interoperability between zeoraid's FileStorage engine and ZODB's.

The Rust engine is driven through its `fs-tool` example (JSON in and out, see
crates/filestorage/examples/fs-tool.rs). Both directions are checked:

1. Python's FileStorage (through ZODB.DB, with blobs, undo, deleteObject, pack)
   writes; our engine reads every transaction, record, history entry, loadBefore
   answer, undo-log entry and blob exactly as Python's FileStorage reports them.
2. Our engine writes (stores, blobs, undo, restore with back-pointers, delete,
   pack); Python opens the file, agrees on everything, `fstest` and `fsdump` find
   no problem, Python commits on top, and we read Python's additions.

Plus: the shared lock file, and crash recovery cutting the same bytes as Python.
"""
import base64
import io
import json
import os
import shutil
import subprocess
import time

import pytest
import transaction
import ZODB
import ZODB.FileStorage
import ZODB.scripts.fstest
import zc.lockfile
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage.fsdump import fsdump
from ZODB.POSException import POSKeyError
from ZODB.TimeStamp import TimeStamp
from ZODB.utils import maxtid, p64, u64, z64
from zodbpickle import pickle as zpickle


def hexid(raw):
    return raw.hex()


def tid_at(t):
    return TimeStamp(*time.gmtime(t)[:5] + (t % 60,)).raw()


def loads_ext(raw):
    return zpickle.loads(raw) if raw else {}


# ---------------------------------------------------------------------------
# The two views, in the same JSON shape.

def py_dump(path, blob_dir=None):
    fs = ZODB.FileStorage.FileStorage(path, read_only=True, blob_dir=blob_dir)
    try:
        txns, oids, tids = [], set(), []
        for t in fs.iterator():
            recs = []
            for r in t:
                oids.add(r.oid)
                has_blob = bool(blob_dir) and os.path.exists(
                    fs.fshelper.getBlobFilename(r.oid, r.tid))
                recs.append({
                    "oid": hexid(r.oid), "tid": hexid(r.tid),
                    "data": None if r.data is None else r.data.hex(),
                    "data_txn": None if r.data_txn is None else hexid(r.data_txn),
                    "has_blob": has_blob,
                })
            tids.append(t.tid)
            txns.append({
                "tid": hexid(t.tid), "status": t.status, "user": t.user.hex(),
                "description": t.description.hex(), "extension": t.extension,
                "records": recs,
            })
        objects = {}
        for oid in sorted(oids):
            try:
                history = [
                    {"tid": hexid(d["tid"]), "size": d["size"],
                     "user": d["user_name"].hex(), "description": d["description"].hex()}
                    for d in fs.history(oid, size=1000)]
            except POSKeyError:
                history = []
            before = {}
            for tid in tids + [maxtid]:
                try:
                    r = fs.loadBefore(oid, tid)
                except POSKeyError:
                    before[hexid(tid)] = "POSKeyError"
                    continue
                before[hexid(tid)] = None if r is None else {
                    "data": r[0].hex(), "start": hexid(r[1]),
                    "end": None if r[2] is None else hexid(r[2])}
            blobs = []
            if blob_dir:
                for tid in tids:
                    try:
                        p = fs.loadBlob(oid, tid)
                    except POSKeyError:
                        continue
                    with open(p, "rb") as f:
                        blobs.append({"tid": hexid(tid), "path": p, "data": f.read().hex()})
            objects[hexid(oid)] = {"history": history, "load_before": before, "blobs": blobs}
        undo = [{"id": d["id"].decode(), "tid": hexid(base64.decodebytes(d["id"] + b"\n")),
                 "size": d["size"], "description": d["description"].hex()}
                for d in fs.undoLog(0, 1000)]
        return {
            "last_tid": hexid(fs.lastTransaction()), "size": fs.getSize(), "length": len(fs),
            "transactions": txns, "objects": objects, "undo_log": undo,
        }
    finally:
        fs.close()


def rust_dump(fs_tool, path, blob_dir=None):
    args = [fs_tool, "dump", str(path)]
    if blob_dir:
        args += ["--blob-dir", str(blob_dir)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    for t in view["transactions"]:
        t["extension"] = loads_ext(bytes.fromhex(t["extension"]))
    return view


def rust(fs_tool, cmd, path, *args, input=None, blob_dir=None, check=True):
    argv = [fs_tool, cmd, str(path), *map(str, args)]
    if blob_dir:
        argv += ["--blob-dir", str(blob_dir)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         input=json.dumps(input) if input is not None else "")
    if check:
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return out


def assert_same_views(ours, theirs):
    assert ours["last_tid"] == theirs["last_tid"]
    assert ours["size"] == theirs["size"]
    assert ours["length"] == theirs["length"]
    assert len(ours["transactions"]) == len(theirs["transactions"])
    for a, b in zip(ours["transactions"], theirs["transactions"]):
        assert a == b, f"transaction {b['tid']} differs"
    assert ours["objects"].keys() == theirs["objects"].keys()
    for oid in theirs["objects"]:
        assert ours["objects"][oid] == theirs["objects"][oid], f"object {oid} differs"
    assert ours["undo_log"] == theirs["undo_log"]


def fstest_ok(path):
    ZODB.scripts.fstest.check(str(path))  # raises FormatError on any problem
    out = io.StringIO()
    fsdump(str(path), out)
    assert "Traceback" not in out.getvalue()


# ---------------------------------------------------------------------------
# 1. Python writes, we read.

def python_writes(path, blob_dir):
    storage = ZODB.FileStorage.FileStorage(str(path), blob_dir=str(blob_dir))
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()

    def commit(note, user=None, **ext):
        t = transaction.get()
        t.note(note)
        if user:
            t.setUser(user)
        for k, v in ext.items():
            t.setExtendedInfo(k, v)
        t.commit()

    root["a"] = PersistentMapping(x=1)
    commit("create a", user="alice", foo="bar")
    root["tree"] = OOBTree()
    root["tree"]["k"] = "v"
    commit("tree")
    root["blob"] = Blob(b"blob data 1")
    commit("blob 1")
    with root["blob"].open("w") as f:
        f.write(b"blob data 2")
    commit("blob 2")
    root["g"] = PersistentMapping(garbage=True)
    commit("garbage")
    del root["g"]
    commit("drop garbage")
    time.sleep(0.05)
    pack_time = time.time()
    time.sleep(0.05)
    root["a"]["x"] = 2
    commit("a x=2")
    with root["blob"].open("w") as f:
        f.write(b"blob data 3")
    commit("blob 3")
    # Undo "blob 3" (blob copied back) and "a x=2".
    db.undo(db.undoLog(0, 1)[0]["id"])
    commit("undo blob 3")
    undo_id = [d["id"] for d in db.undoLog(0, 20) if d["description"] in ("a x=2", b"a x=2")][0]
    db.undo(undo_id)
    commit("undo a x=2")
    # deleteObject on an unreferenced object.
    root["doomed"] = PersistentMapping()
    commit("doomed")
    doomed = root["doomed"]
    oid, serial = doomed._p_oid, doomed._p_serial
    del root["doomed"]
    commit("unlink doomed")
    t = TransactionMetaData()
    storage.tpc_begin(t)
    storage.deleteObject(oid, serial, t)
    storage.tpc_vote(t)
    storage.tpc_finish(t)
    conn.close()
    db.close()
    return pack_time


def test_python_writes_we_read(fs_tool, tmp_path):
    path, blobs = tmp_path / "Data.fs", tmp_path / "blobs"
    python_writes(path, blobs)
    theirs = py_dump(str(path), str(blobs))
    assert any(o["blobs"] for o in theirs["objects"].values())
    assert_same_views(rust_dump(fs_tool, path, blobs), theirs)


def test_python_packs_we_read(fs_tool, tmp_path):
    path, blobs = tmp_path / "Data.fs", tmp_path / "blobs"
    pack_time = python_writes(path, blobs)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path), blob_dir=str(blobs)))
    db.pack(pack_time)
    db.close()
    theirs = py_dump(str(path), str(blobs))
    assert any(t["status"] == "p" for t in theirs["transactions"])
    assert_same_views(rust_dump(fs_tool, path, blobs), theirs)


def test_we_pack_python_file(fs_tool, tmp_path):
    """Our pack (with GC, references found by our pickle decoder) of a real ZODB
    database, compared with Python's own pack of a copy of the same file."""
    path, blobs = tmp_path / "Data.fs", tmp_path / "blobs"
    pack_time = python_writes(path, blobs)
    ppath, pblobs = tmp_path / "py" / "Data.fs", tmp_path / "py" / "blobs"
    os.mkdir(tmp_path / "py")
    shutil.copy(path, ppath)
    shutil.copytree(blobs, pblobs)
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(ppath), blob_dir=str(pblobs)))
    db.pack(pack_time)
    db.close()
    rust(fs_tool, "pack", path, repr(pack_time), blob_dir=blobs)
    fstest_ok(path)
    assert (tmp_path / "Data.fs.old").exists()
    assert not (tmp_path / "Data.fs.index").exists()
    assert open(path, "rb").read() == open(ppath, "rb").read()
    ours = py_dump(str(path), str(blobs))
    theirs = py_dump(str(ppath), str(pblobs))
    for view in (ours, theirs):
        for o in view["objects"].values():
            for b in o["blobs"]:
                del b["path"]
    assert ours == theirs
    assert_same_views(rust_dump(fs_tool, path, blobs), py_dump(str(path), str(blobs)))


# ---------------------------------------------------------------------------
# 2. We write, Python reads (and writes on top).

class Ref:
    def __init__(self, oid):
        self.oid = oid


def record(refs=(), payload="x"):
    """A ZODB record: class metadata pickle, then a state pickle with references."""
    f = io.BytesIO()
    p = zpickle.Pickler(f, 3)
    p.persistent_id = lambda obj: (p64(obj.oid), PersistentMapping) if isinstance(obj, Ref) else None
    p.dump((PersistentMapping, None))
    p.dump({"data": {"payload": payload, "refs": [Ref(r) for r in refs]}})
    return f.getvalue()


def h(n):
    return p64(n).hex()


def op_store(oid, serial, data, blob=None):
    op = {"op": "store_blob" if blob else "store", "oid": h(oid), "serial": serial,
          "data": data.hex()}
    if blob:
        op["blob"] = str(blob)
    return op


def our_history(tmp_path, base):
    """A commit script for fs-tool with explicit tids one minute apart."""
    tids = [tid_at(base + 60 * i).hex() for i in range(10)]
    blob1, blob2 = tmp_path / "b1.tmp", tmp_path / "b2.tmp"
    blob1.write_bytes(b"first blob")
    blob2.write_bytes(b"second blob")
    Z = z64.hex()

    def txn(i, desc, ops, **kw):
        return dict(tid=tids[i], user=b"us".hex(), description=desc.encode().hex(),
                    extension=zpickle.dumps({"n": i}, 3).hex(), ops=ops, **kw)

    script = [
        txn(0, "create", [op_store(0, Z, record([1, 2, 3])), op_store(1, Z, record(payload="v1")),
                          op_store(2, Z, record(payload="garbage soon")),
                          op_store(3, Z, record(payload="blob"), blob=blob1)]),
        txn(1, "change 1", [op_store(1, tids[0], record(payload="v2"))]),
        txn(2, "unlink 2", [op_store(0, tids[0], record([1, 3]))]),
        txn(3, "undo change 1", [{"op": "undo", "tid": tids[1]}]),
        txn(4, "restore", [
            {"op": "restore", "oid": h(4), "data": record(payload="restored").hex(),
             "prev_txn": None},
            {"op": "restore", "oid": h(1), "data": None, "prev_txn": tids[0]}]),
        txn(5, "delete 2", [{"op": "delete", "oid": h(2), "serial": tids[0]}]),
        txn(6, "blob 2", [op_store(3, tids[0], record(payload="blob"), blob=blob2)]),
        txn(7, "aborted", [op_store(1, tids[4], record(payload="never"))], abort=True),
        txn(7, "conflict", [op_store(1, tids[0], record(payload="conflict"))]),
    ]
    return tids, script


def test_we_write_python_reads(fs_tool, tmp_path):
    path, blobs = tmp_path / "Data.fs", tmp_path / "blobs"
    tids, script = our_history(tmp_path, time.time() - 7200)
    answers = rust(fs_tool, "commit", path, input=script, blob_dir=blobs)
    assert [a.get("tid") for a in answers[:7]] == tids[:7]
    assert answers[3]["undone"] == [h(1)]
    assert answers[7] == {"aborted": True}
    assert answers[8]["conflicts"][0]["oid"] == h(1)
    fstest_ok(path)
    theirs = py_dump(str(path), str(blobs))
    assert_same_views(rust_dump(fs_tool, path, blobs), theirs)
    recs = {t["tid"]: t["records"] for t in theirs["transactions"]}
    assert recs[tids[3]][0]["data_txn"] == tids[0]           # undo wrote a back-pointer
    assert recs[tids[4]][1]["data_txn"] == tids[0]           # restore kept it
    assert recs[tids[5]][0]["data"] is None                  # delete
    blob_tids = {b["tid"]: bytes.fromhex(b["data"]) for b in theirs["objects"][h(3)]["blobs"]}
    assert blob_tids == {tids[0]: b"first blob", tids[6]: b"second blob"}

    # Python commits on top (and leaves its Data.fs.index behind).
    fs = ZODB.FileStorage.FileStorage(str(path), blob_dir=str(blobs))
    t = TransactionMetaData(b"py", b"python on top")
    fs.tpc_begin(t)
    fs.store(p64(1), fs.load(p64(1))[1], record(payload="from python"), "", t)
    fs.tpc_vote(t)
    py_tid = fs.tpc_finish(t)
    fs.close()
    assert (tmp_path / "Data.fs.index").exists()
    ours = rust_dump(fs_tool, path, blobs)
    assert ours["last_tid"] == py_tid.hex()
    assert_same_views(ours, py_dump(str(path), str(blobs)))

    # We append again; Python (re-scanning from its saved index) agrees.
    answers = rust(fs_tool, "commit", path, blob_dir=blobs, input=[
        dict(description="after python".encode().hex(),
             ops=[op_store(1, py_tid.hex(), record(payload="v4"))])])
    assert "tid" in answers[0], answers
    fstest_ok(path)
    assert_same_views(rust_dump(fs_tool, path, blobs), py_dump(str(path), str(blobs)))
    fs = ZODB.FileStorage.FileStorage(str(path), blob_dir=str(blobs))
    assert fs.lastTransaction().hex() == answers[0]["tid"]
    assert fs._used_index == 1
    fs.close()


def test_we_pack_python_reads(fs_tool, tmp_path):
    path, blobs = tmp_path / "Data.fs", tmp_path / "blobs"
    base = time.time() - 7200
    tids, script = our_history(tmp_path, base)
    rust(fs_tool, "commit", path, input=script, blob_dir=blobs)
    # Python leaves an index; pack must remove it.
    ZODB.FileStorage.FileStorage(str(path), blob_dir=str(blobs)).close()
    assert (tmp_path / "Data.fs.index").exists()

    # Pack to just after "unlink 2": oid 2 is garbage, history before goes.
    rust(fs_tool, "pack", path, repr(base + 60 * 2 + 30), blob_dir=blobs)
    assert not (tmp_path / "Data.fs.index").exists()
    assert (tmp_path / "Data.fs.old").exists()
    fstest_ok(path)
    theirs = py_dump(str(path), str(blobs))
    assert_same_views(rust_dump(fs_tool, path, blobs), theirs)
    statuses = [t["status"] for t in theirs["transactions"]]
    assert statuses[0] == "p" and statuses[-1] == " "
    assert h(2) not in {r["oid"] for t in theirs["transactions"] if t["status"] == "p"
                        for r in t["records"]}
    # The undo after the pack time still points back into the packed part.
    recs = {t["tid"]: t["records"] for t in theirs["transactions"]}
    assert recs[tids[3]][0]["data_txn"] == tids[0]

    # Pack to now: the first blob revision goes, the current one stays.
    rust(fs_tool, "pack", path, repr(time.time()), blob_dir=blobs)
    fstest_ok(path)
    theirs = py_dump(str(path), str(blobs))
    assert_same_views(rust_dump(fs_tool, path, blobs), theirs)
    assert [b["tid"] for b in theirs["objects"][h(3)]["blobs"]] == [tids[6]]
    assert theirs["last_tid"] == tids[6]

    # Python opens the packed file, commits and packs it itself.
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path), blob_dir=str(blobs)))
    with db.transaction() as conn:
        conn.root()["new"] = PersistentMapping(python=True)
    db.pack()
    db.close()
    fstest_ok(path)
    assert_same_views(rust_dump(fs_tool, path, blobs), py_dump(str(path), str(blobs)))


def test_pack_without_gc(fs_tool, tmp_path):
    path = tmp_path / "Data.fs"
    base = time.time() - 7200
    tids, script = our_history(tmp_path, base)
    rust(fs_tool, "commit", path, input=[dict(s, ops=[o for o in s["ops"] if o["op"] != "store_blob"])
                                         for s in script])
    rust(fs_tool, "pack", path, repr(base + 60 * 2 + 30), "--no-gc")
    fstest_ok(path)
    theirs = py_dump(str(path))
    assert_same_views(rust_dump(fs_tool, path), theirs)
    # Without GC the unreferenced oid 2 survives the pack.
    assert theirs["objects"][h(2)]["load_before"][tids[3]] is not None


# ---------------------------------------------------------------------------
# Lock file and crash recovery.

def test_lock_excludes_python_and_us(fs_tool, tmp_path):
    path = tmp_path / "Data.fs"
    fs = ZODB.FileStorage.FileStorage(str(path))
    out = rust(fs_tool, "commit", path, input=[], check=False)
    assert out.returncode != 0 and "lock" in out.stderr.lower()
    fs.close()
    holder = subprocess.Popen([fs_tool, "hold", str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(zc.lockfile.LockError):
            ZODB.FileStorage.FileStorage(str(path))
        # Read-only opens need no lock.
        ZODB.FileStorage.FileStorage(str(path), read_only=True).close()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    ZODB.FileStorage.FileStorage(str(path)).close()


def test_crash_recovery_matches_python(fs_tool, tmp_path):
    src = tmp_path / "src.fs"
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(src)))
    for i in range(3):
        with db.transaction() as conn:
            conn.root()[f"k{i}"] = PersistentMapping(i=i)
    db.close()
    data = src.read_bytes()
    last_len = u64(data[-8:]) + 8
    start = len(data) - last_len
    for cut in sorted({start + 1, start + 22, start + 23, start + 40, len(data) - 9,
                       len(data) - 1}):
        for who in ("py", "rust"):
            d = tmp_path / f"{who}{cut}"
            d.mkdir()
            (d / "Data.fs").write_bytes(data[:cut])
        ZODB.FileStorage.FileStorage(str(tmp_path / f"py{cut}" / "Data.fs")).close()
        rust(fs_tool, "commit", tmp_path / f"rust{cut}" / "Data.fs", input=[])
        py_bytes = (tmp_path / f"py{cut}" / "Data.fs").read_bytes()
        assert (tmp_path / f"rust{cut}" / "Data.fs").read_bytes() == py_bytes == data[:start]
        assert (tmp_path / f"rust{cut}" / "Data.fs.tr0").read_bytes() == data[start:cut]
    # A checkpoint ('c') last transaction is cut too.
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "Data.fs").write_bytes(data[:start + 16] + b"c" + data[start + 17:])
    rust(fs_tool, "commit", d / "Data.fs", input=[])
    assert (d / "Data.fs").read_bytes() == data[:start]
