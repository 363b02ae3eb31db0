"""ZODB's and ZEO's own test suites through a real ZEO.ClientStorage against
`zeoraid serve` (see tests/python/zodb_suites and docs/compatibility.md).

Server kinds (zodb_suites/harness.py): "zeoraid" (a `<filestorage>`), "proxy"
(a `<zeoclient>` in front of a runzeo), "raid2-fs", "raid3-fs", "raid2-zeo",
"raid3-zeo", "raid2-mixed", "raid3-mixed" (a `<raidstorage>` over 2 or 3
embedded and/or runzeo backends), and "runzeo" (Python's server, the
reference).

By default: every class and doctest against zeoraid; ZODB's storage mixins
(+ RecoveryStorage) against the proxy and the six RAID variants.
ZEORAID_FULL_SUITES=1: everything against every kind, runzeo included.
ZEORAID_SUITES=kind,kind,… (or "both" = zeoraid,runzeo, "all") picks the kinds.
"""
import os

import pytest

from zodb_suites import exclusions
from zodb_suites import harness
from zodb_suites import suites

RAID_KINDS = [k for k in harness.KINDS if k.startswith("raid")]


def _kinds():
    value = os.environ.get("ZEORAID_SUITES")
    if not value:
        if suites.FULL:
            return list(harness.KINDS)
        return ["zeoraid", "proxy"] + RAID_KINDS
    if value == "both":
        return ["zeoraid", "runzeo"]
    if value == "all":
        return list(harness.KINDS)
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in harness.KINDS]
    if unknown:
        raise ValueError("ZEORAID_SUITES: unknown server kind(s) %s (known: %s)"
                         % (", ".join(unknown), ", ".join(harness.KINDS)))
    return kinds


KINDS = _kinds()


def _everything(kind):
    """Whether `kind` runs every class and doctest, or only ZODB's storage
    mixins (StorageMixinTests, FileStorageRecoveryTests)."""
    return suites.FULL or kind in ("zeoraid", "runzeo")


for _kind in KINDS:
    if _everything(_kind):
        _classes = dict(suites.CLASSES)
        if suites.FULL:
            _classes.update(suites.SLOW_CLASSES)
    else:
        _classes = dict(suites.STORAGE_CLASSES)
    for _name, _base in _classes.items():
        _cls = suites.make_class(_kind, _name, _base,
                                 long_tests=suites.FULL or _kind == "zeoraid")
        _cls.__module__ = __name__
        globals()[_cls.__name__] = _cls
del _kind, _classes, _name, _base, _cls

_CASES = suites.doctest_cases() if any(_everything(k) for k in KINDS) else []


def _params():
    out = []
    for kind in KINDS:
        if not _everything(kind):
            continue
        for pid, upstream, short, test, layer in _CASES:
            marks = []
            bug = exclusions.lookup(exclusions.XFAIL, upstream, short, kind)
            if bug and kind != "runzeo":
                marks.append(pytest.mark.xfail(strict=True, reason=bug))
            out.append(pytest.param(kind, upstream, short, test, layer,
                                    id="%s-%s" % (kind, pid), marks=marks))
    return out


_PARAMS = _params()

if _PARAMS:  # (an empty parameter set would show as a skipped test)
    @pytest.mark.parametrize("kind,upstream,short,test,layer", _PARAMS)
    def test_doctest_suite(kind, upstream, short, test, layer):
        suites.run_case(kind, upstream, short, test, layer)


@pytest.fixture(autouse=True, scope="module")
def _no_servers_left_behind():
    yield
    harness.kill_all()
    suites.release_stuck_threads()
