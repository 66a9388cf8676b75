"""Issue 13, "Done when": kill -9 of `trialaudit serve --workers 2` under mixed load (short version).

The full campaign is ``python -m bench.crash --store sqlite --cycles 20`` (and ``--store postgres
--cycles 5``); this runs two cycles on each store: no acknowledged write lost, no 5xx outside the
kill window, `trialaudit verify` passing after every restart (R7, R10).
"""

from __future__ import annotations

import pytest

from bench.crash import campaign


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_write(store_url, tmp_path):
    results = campaign(store_url, tmp_path, 2, threads=3, load_seconds=(1.0, 2.0), out=lambda *_: None)
    assert sum(r.counts["writes_2xx"] for r in results) > 0
    assert [(r.lost, r.errors_outside_window, r.verify_rc) for r in results] == [(0, 0, 0)] * 2, \
        [r.detail for r in results]
