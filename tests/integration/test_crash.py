"""`key create`, `key rollover` and `backup restore` killed (SIGKILL) at step boundaries, in the
controller and in a node's operation: after `key resume` (or, for a restore, running it again) the
duo is consistent (tests/support/crash.py says what that means). CI runs a seeded sample of the kill
points; bench/crash_sweep.py runs every one and writes its result file. The restore tests each wipe
node b and leave it rebuilt; they run before the KEK replacement, which comes last (a restore cannot
use bundles made under a retired KEK yet: docs/security.md)."""

from __future__ import annotations

import os
import random

import pytest

from tests.integration.conftest import Lab
from tests.support.crash import (
    JOURNAL_RECORDS,
    KEY_CREATE_POINTS,
    KEY_ROLLOVER_POINTS,
    ZONE_TEXT,
    consistency,
    key_create_at,
    key_rollover_at,
    op,
    restore_at,
    run,
)

SEED = int(os.environ.get("ODS_DUO_CRASH_SEED", "20261129"))
SAMPLE = sorted(random.Random(SEED).sample(KEY_CREATE_POINTS, 6))
# the commit point, a lost node reply and the import split are always in the sample
POINTS = sorted({*SAMPLE, "journal:3", "op:key-unwrap-batch:after", "op:key-import-batch:after"})
# a rollover: its commit point, a lost reply of `key rollover`, and two more
ROLL_SAMPLE = random.Random(SEED).sample(sorted(set(KEY_ROLLOVER_POINTS) - {"journal:7"}), 2)
ROLL_POINTS = sorted({*ROLL_SAMPLE, "journal:7", "op:key-rollover:after"})
# a restore (about 10 s each, twice per point): the controller killed after its KEK-copy record (the
# token made, nothing in it), a lost reply of a key unwrap, the enforcer killed with some keys
# imported, and one more journal record from the seeded sample (the count depends on the lab's keys:
# journal:1..3 are the same for any). Recovery alternates: `backup restore` again, `key resume`.
RESTORE_POINTS = [
    ("journal:3", "restore"),
    ("op:key-unwrap:after", "resume"),
    ("op:key-import:before", "restore"),
    (
        random.Random(SEED).choice(["journal:1", "journal:2", "op:init:after", "op:kek-unwrap:before"]),
        "resume",
    ),
]


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory) -> Lab:  # type: ignore[no-untyped-def]
    # another address when two checkouts run this module at once on one machine
    lab = make_lab(os.environ.get("ODS_DUO_CRASH_ADDRESS", "127.0.0.230"))
    folder = tmp_path_factory.mktemp("zones")
    for zone in [f"crash{i}.test" for i in range(len(POINTS))] + [
        f"roll{i}.test" for i in range(len(ROLL_POINTS))
    ]:
        path = folder / zone
        path.write_text(ZONE_TEXT.format(zone=zone))
        lab.duo("zone", "add", zone, "--file", str(path))
        if zone.startswith("roll"):
            lab.duo("key", "create", zone)
    return lab


@pytest.mark.parametrize("point", POINTS)
def test_key_create_killed_at_a_step_boundary_recovers(lab: Lab, point: str) -> None:
    zone = f"crash{POINTS.index(point)}.test"
    outcome = key_create_at(lab.config, ["a", "b"], zone, point)
    assert outcome.killed_exit != 0, f"{point}: the fault point was never reached"
    assert outcome.problems == [], f"{point}: {outcome}"
    # Past the commit point the keys are finished forward; before it, undone and made anew.
    assert outcome.keys in (0, 2)
    if point == f"journal:{JOURNAL_RECORDS}" or point.startswith(("op:key-import-batch:", "op:enforce:")):
        assert outcome.keys == 2, f"{point}: the run was past its commit point, so it must be finished"


@pytest.mark.parametrize("point", ROLL_POINTS)
def test_key_rollover_killed_at_a_step_boundary_recovers(lab: Lab, point: str) -> None:
    zone = f"roll{ROLL_POINTS.index(point)}.test"
    outcome = key_rollover_at(lab.config, ["a", "b"], zone, point)
    assert outcome.killed_exit != 0, f"{point}: the fault point was never reached"
    assert outcome.problems == [], f"{point}: {outcome}"
    if point == "journal:7" or point.startswith("op:key-rollover:"):
        assert outcome.keys == 3, f"{point}: the run was past its commit point, so it must be finished"


@pytest.mark.parametrize(("point", "recover"), RESTORE_POINTS)
def test_backup_restore_killed_at_a_step_boundary_is_finished(lab: Lab, point: str, recover: str) -> None:
    """Node b wiped, its restore killed at `point`; running the restore again (or `key resume`)
    finishes it: b serves every zone with a's DNSKEYs, no orphan anywhere, the backup verifies."""
    assert recover in ("restore", "resume")
    outcome = restore_at(lab.config, ["a", "b"], "b", point, "restore" if recover == "restore" else "resume")
    assert outcome.killed_exit != 0, f"{point}: the fault point was never reached"
    assert outcome.problems == [], f"{point}: {outcome}"
    assert outcome.keys > 0, f"{point}: no zone with keys was compared"
    assert op(lab.config, "b", "status")["daemons"]["enforcerd"], "the restored node runs"


def test_kek_replace_killed_midway_is_refused_by_key_commands_and_finished_by_running_it_again(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`kek init --replace` killed as it hands the new KEK to a node: the backup has the new KEK,
    the nodes the old one. No key is made under mixed KEKs (the preflight compares fingerprints),
    running `kek init --replace` again puts one KEK everywhere, and every bundle still verifies
    (the backup keeps each replaced KEK for unwrapping)."""
    killed = run(lab.config, "kek", "init", "--replace", fault="op:kek-unwrap:before")
    assert killed.returncode != 0
    status = {t: op(lab.config, t, "kek-status")["fingerprint"] for t in ("a", "b", "backup")}
    assert status["a"] == status["b"] != status["backup"]
    path = tmp_path_factory.mktemp("kekcrash") / "kekcrash.test"
    path.write_text(ZONE_TEXT.format(zone="kekcrash.test"))
    lab.duo("zone", "add", "kekcrash.test", "--file", str(path))
    refused = run(lab.config, "key", "create", "kekcrash.test")
    assert refused.returncode == 1 and "the KEKs differ" in refused.stderr, refused.stderr
    assert consistency(lab.config, ["a", "b"]) == []
    lab.duo("kek", "init", "--replace")
    status = {t: op(lab.config, t, "kek-status")["fingerprint"] for t in ("a", "b", "backup")}
    assert len(set(status.values())) == 1
    lab.duo("key", "create", "kekcrash.test")
    assert consistency(lab.config, ["a", "b"]) == []
