"""Tid arithmetic in Rust agrees with Python's persistent.TimeStamp (the C one ZODB uses)."""
import random
import struct
import time

from persistent.TimeStamp import TimeStamp


def python_new_tid(t):
    # ZODB.utils.newTid without the laterThan step.
    return TimeStamp(*time.gmtime(t)[:5] + (t % 60,)).raw()


def sample_raw_tids():
    rng = random.Random(20261123)
    tids = [
        bytes(8),
        bytes.fromhex("040d36e91e8a0466"),
        bytes.fromhex("040d36e922ee8899"),
        bytes.fromhex("03ffffffffffffff"),
        bytes.fromhex("0000000000ffffff"),
        bytes.fromhex("00000000ffffffff"),
        bytes.fromhex("7fffffffffffffff"),
    ]
    # Last minute of a month / year / leap day, with seconds saturated.
    for y, mo, d, h, mi in [(2024, 2, 29, 23, 59), (2023, 2, 28, 23, 59),
                            (2026, 12, 31, 23, 59), (2026, 4, 30, 23, 59),
                            (1999, 12, 31, 23, 59), (2026, 11, 23, 18, 49)]:
        a = struct.unpack(">I", TimeStamp(y, mo, d, h, mi, 0).raw()[:4])[0]
        tids.append(struct.pack(">II", a, 0xFFFFFFFF))
        tids.append(struct.pack(">II", a, rng.getrandbits(32)))
    for _ in range(300):
        # Valid calendar values, random seconds fraction.
        ts = TimeStamp(rng.randint(1900, 2200), rng.randint(1, 12),
                       rng.randint(1, 28), rng.randint(0, 23),
                       rng.randint(0, 59), rng.random() * 60)
        tids.append(ts.raw())
    return tids


def test_display_time_and_later_than_match_persistent(zeoraid):
    tids = sample_raw_tids()
    out = zeoraid("debug", "tid", input="".join(
        "raw %s\n" % t.hex() for t in tids), check=True).stdout.splitlines()
    assert len(out) == len(tids)
    for raw, line in zip(tids, out):
        display, time_time, later = line.split("\t")
        ts = TimeStamp(raw)
        assert display == str(ts), raw.hex()
        assert float(time_time) == ts.timeTime(), raw.hex()
        assert later == ts.laterThan(ts).raw().hex(), raw.hex()


def test_tid_from_wall_time_matches_newtid(zeoraid):
    rng = random.Random(7)
    times = [0.0, 1795459110.9912295, 951782400.5, 4102444799.999, time.time()]
    times += [rng.uniform(0, 4e9) for _ in range(300)]
    out = zeoraid("debug", "tid", input="".join(
        "time %r\n" % t for t in times), check=True).stdout.splitlines()
    assert out == [python_new_tid(t).hex() for t in times]
