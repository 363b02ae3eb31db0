"""ZODB's and ZEO's own storage test suites, run through a real
`ZEO.ClientStorage` against an external server process.

`harness` replaces `ZEO.tests.forker.start_zeo_server` (the hook every ZEO test
uses to start a server) with one that translates the test's ZConfig into a
plain zeo.conf and starts `zeoraid serve -C` (or, for the reference run,
`python -m ZEO.runzeo -C` on the same file). `suites` builds the test classes,
`exclusions` lists what is not run and why. See docs/compatibility.md.
"""
