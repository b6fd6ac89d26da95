"""A seeded random sequence of node stops and starts, hung signers (SIGSTOP/SIGCONT), zone file
edits, `zone update`s and one wipe-and-restore, on a real failover duo with the freshness sampler
running (issue 13).

ODS_DUO_RANDOM_SEED picks the seed (a fixed default here, so CI replays the same steps) and
ODS_DUO_RANDOM_STEPS the length; a failure prints the seed and the step list with wall-clock times
(to match against the daemons' logs). Longer runs, more seeds and split mode: bench/random_ops.py.

The sequence found three product bugs, each fixed and covered here since:
- `backup restore`: the rebuilt node's fresh signer signed the newest input first at one above the
  input's own SOA serial (...01), a serial the other signer had served with other content; the
  restore now raises the input's serial floor above every copy first (zones.serial.with_serial_floor).
- `node start`: the node operation asked a started signer to read every input again (`sign --all`),
  and it signed a changed input at a serial of its own choosing; now the operation only starts the
  daemons, and the controller's node start signs the changed zones at a chosen serial.
- `zone update` racing the watcher's sign of the same zone: ods-signer answered "scheduled for
  immediate re-sign" with exit 1 and the node was reported as not signing; that answer is taken now.
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
RESTORE = os.environ.get("ODS_DUO_RANDOM_RESTORE", "1") == "1"
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
    print(
        f"seed {SEED}: {len(ops.done)} steps, {len(sampler.versions)} versions, samples {counts}, "
        f"settled {settled:.1f} s after the last step, {time.monotonic() - started:.0f} s in all"
    )
