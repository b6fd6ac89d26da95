"""A seeded random sequence of node stops and starts, hung signers (SIGSTOP/SIGCONT), zone file
edits, `zone update`s and one wipe-and-restore, on a real failover duo with the freshness sampler
running (issue 13).

ODS_DUO_RANDOM_SEED picks the seed (a fixed default here, so CI replays the same steps) and
ODS_DUO_RANDOM_STEPS the length; a failure prints the seed and the step list with wall-clock times
(to match against the daemons' logs). Longer runs, more seeds and split mode: bench/random_ops.py.

The wipe-and-restore step is OFF in CI (ODS_DUO_RANDOM_RESTORE=1 turns it on) because it finds a
product bug, reported and not fixed here: `backup restore --node X` starts X's fresh ods-signerd on
the newest input, whose SOA serial is still the input file's (YYYYMMDD00), so X first signs it at
YYYYMMDD01 (ODS: "unable to use datecounter as serial ... Serial set to ...01"), then ...02, and
only then the levelled serial. For that moment X serves the newest content at a serial the other
signer served earlier with the first content: two contents under one serial (seed 1301 with the
restore on, restore of b at step 21: "serial 2026112901: signer b serves other content than signer
a"). The secondaries held higher serials and did not take it.

The same cause shows at `node start` (bench/results/random_ops.md, split, seed 1301, step 6): a node
that missed updates starts on the newest input and its signer signs it at its own next serial, one
the other signer used for other content, before the catch-up levels it. In split mode the node's
secondary took that copy; in failover mode (this test) only the signers carry it, for under a
second, so the sampler rarely sees it (two runs of this test here saw nothing); if this test fails
with "serial N: signer X serves content version V", that is this bug, not a flaky test.

A second product bug is tolerated here (printed, not failed; see KNOWN_MISREPORT in
tests/support/freshness.py): `zone update` racing the watcher's sign of the same zone reports running
signers as "signer down, new input stored" and exits 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import Lab
from tests.support.freshness import ZONE, RandomOps, Sampler, check_report, version_digest

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("ODS_DUO_RANDOM_SEED", "1301"))
STEPS = int(os.environ.get("ODS_DUO_RANDOM_STEPS", "30"))
RESTORE = os.environ.get("ODS_DUO_RANDOM_RESTORE", "0") == "1"
SETTLE = 60.0  # seconds: after the last step, every signer and secondary serves the newest data


def test_random_steps_keep_the_newest_data_winning(make_lab: Callable[..., Lab]) -> None:
    started = time.monotonic()
    lab = make_lab("127.0.0.240")
    sampler = Sampler(lab)
    sampler.expect(version_digest(lab, (lab.dir / "input" / ZONE).read_text()))
    thread = sampler.start()
    ops = RandomOps(lab, sampler, SEED, STEPS, restore=RESTORE)
    try:
        try:
            ops.run()
            settled = ops.settle(SETTLE)
            report = check_report(lab)
            time.sleep(2)  # a few more samples after the end
        except BaseException:
            print(ops.replay())
            raise
        replay = ops.replay()
        assert ops.restored == RESTORE, replay
        assert ops.problems == [], f"{ops.problems}\n{replay}"
        assert report["ok"], f"{report}\n{replay}"
        counts = sampler.counts()
        assert min(counts.values()) > 20, counts
        assert sampler.problems == [], f"{sampler.problems}\n{replay}"
        kinds = {s.kind for s in ops.done}
        assert {"stop", "start", "pause", "resume", "edit", "update"} <= kinds, replay
    finally:
        sampler.stop.set()
        thread.join(timeout=10)
    print(replay)
    if ops.known:
        print("known product bug (see KNOWN_MISREPORT):\n" + "\n".join(ops.known))
    print(
        f"seed {SEED}: {len(ops.done)} steps, {len(sampler.versions)} versions, samples {counts}, "
        f"settled {settled:.1f} s after the last step, {time.monotonic() - started:.0f} s in all"
    )
