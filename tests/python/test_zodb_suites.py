"""ZODB's and ZEO's own test suites through a real ZEO.ClientStorage against
`zeoraid serve` (see tests/python/zodb_suites and docs/compatibility.md).

By default the zeoraid side runs. ZEORAID_FULL_SUITES=1 adds the reference
run against Python's `runzeo` (classes and tests prefixed `Runzeo`) and the
slow classes; ZEORAID_SUITES=zeoraid|runzeo|both picks the servers.
"""
import os

import pytest

from zodb_suites import exclusions
from zodb_suites import harness
from zodb_suites import suites

_default = "both" if suites.FULL else "zeoraid"
KINDS = {"both": ["zeoraid", "runzeo"]}.get(
    os.environ.get("ZEORAID_SUITES", _default), [os.environ.get("ZEORAID_SUITES", _default)])

for _kind in KINDS:
    _classes = dict(suites.CLASSES)
    if suites.FULL:
        _classes.update(suites.SLOW_CLASSES)
    for _name, _base in _classes.items():
        _cls = suites.make_class(_kind, _name, _base)
        _cls.__module__ = __name__
        globals()[_cls.__name__] = _cls
del _kind, _classes, _name, _base, _cls

_CASES = suites.doctest_cases()


def _params():
    out = []
    for kind in KINDS:
        for pid, upstream, short, test, layer in _CASES:
            marks = []
            bug = exclusions.lookup(exclusions.XFAIL, upstream, short)
            if bug and kind == "zeoraid":
                marks.append(pytest.mark.xfail(strict=True, reason=bug))
            out.append(pytest.param(kind, upstream, short, test, layer,
                                    id="%s-%s" % (kind, pid), marks=marks))
    return out


@pytest.mark.parametrize("kind,upstream,short,test,layer", _params())
def test_doctest_suite(kind, upstream, short, test, layer):
    suites.run_case(kind, upstream, short, test, layer)


@pytest.fixture(autouse=True, scope="module")
def _no_servers_left_behind():
    yield
    harness.kill_all()
    suites.release_stuck_threads()
