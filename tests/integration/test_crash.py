"""`key create`, `key rollover`, `backup restore` and `kek init --replace` killed (SIGKILL) at step
boundaries, in the controller and in a node's operation: after `key resume` (or, for a restore,
running it again) the duo is consistent (tests/support/crash.py says what that means). CI runs a
seeded sample of the kill points; bench/crash_sweep.py runs every one and writes its result file.
The restore tests each wipe node b and leave it rebuilt; the KEK replacements come last (a restore
after one is tests/integration/test_restore.py's)."""

from __future__ import annotations

import os
import random
import signal

import pytest

from tests.integration.conftest import Lab
from tests.support.crash import (
    JOURNAL_RECORDS,
    KEY_CREATE_POINTS,
    KEY_ROLLOVER_POINTS,
    ZONE_TEXT,
    consistency,
    kek_problems,
    kek_replace_at,
    key_create_at,
    key_rollover_at,
    op,
    restore_at,
    run,
    same_dnskeys,
    wipe,
    zone_keys,
)

SEED = int(os.environ.get("ODS_DUO_CRASH_SEED", "20261129"))
# CI's time budget keeps the sample small; bench/crash_sweep.py runs every point (bench/results/crash-*.md).
SAMPLE = sorted(random.Random(SEED).sample(KEY_CREATE_POINTS, 1))
# the commit point and the import split are always in the sample
POINTS = sorted({*SAMPLE, "journal:3", "op:key-import-batch:after"})
# a rollover: its commit point and a lost reply of `key rollover`
ROLL_POINTS = ["journal:7", "op:key-rollover:after"]
assert set(ROLL_POINTS) <= set(KEY_ROLLOVER_POINTS), "a kill point the rollover no longer has"
# a restore (about 40 s a point): the controller killed after its KEK-copy record (the token made,
# nothing in it), and a lost reply of a key unwrap. Recovery alternates: `backup restore` again,
# `key resume`.
RESTORE_POINTS = [
    ("journal:3", "restore"),
    ("op:key-unwrap:after", "resume"),
]

# kek init --replace (about 1 min a point): the SO's pin of node a's transport key made but the
# hand-over not (a pin to take back); the midway test below covers a run killed after its commit.
KEK_POINTS = ["op:kek-wrap-for:before"]


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory) -> Lab:  # type: ignore[no-untyped-def]
    # another address when two checkouts run this module at once on one machine
    lab = make_lab(os.environ.get("ODS_DUO_CRASH_ADDRESS", "127.0.0.230"))
    folder = tmp_path_factory.mktemp("zones")
    # Every zone here has keys by the time a rollover runs: a zone on the policy without a key of the
    # role makes the rollover refuse (keys/rollover.py), so the kek tests add their keyless zones later.
    crash = [f"crash{i}.test" for i in range(len(POINTS))]
    for zone in crash + [f"roll{i}.test" for i in range(len(ROLL_POINTS))]:
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


def test_a_key_command_left_unfinished_does_not_block_the_restore_of_a_lost_node(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`key create` killed past its commit point (both enforcers have the keys, the last `enforce`
    not run), then node b lost. Finishing the key create needs b, and every key command finishes
    leftovers first: the restore of b sets it aside, rebuilds b from a, then finishes it."""
    path = tmp_path_factory.mktemp("park") / "park.test"
    path.write_text(ZONE_TEXT.format(zone="park.test"))
    lab.duo("zone", "add", "park.test", "--file", str(path))
    # The key origin's watcher would finish the leftover on its own within 30 s: paused (by pid).
    [watcher] = [w["pid"] for w in lab.status["watchers"] if w["node"] == "a"]
    os.kill(watcher, signal.SIGSTOP)
    try:
        killed = run(lab.config, "key", "create", "park.test", fault="op:enforce:before")
        assert killed.returncode != 0, killed.stdout
        wipe(lab.config, "b")
        restored = run(lab.config, "backup", "restore", "--node", "b")
    finally:
        os.kill(watcher, signal.SIGCONT)
    assert restored.returncode == 0, restored.stderr
    assert "then: the unfinished key create of park.test was finished after the restore" in restored.stdout
    compared, problems = same_dnskeys(lab.config, "b", "a")
    assert compared > 0 and problems == [], problems
    assert consistency(lab.config, ["a", "b"]) == []
    assert len(zone_keys(lab.config, "b", "park.test")) == 2


@pytest.mark.parametrize("point", KEK_POINTS)
def test_kek_replace_killed_at_a_step_boundary_recovers(
    lab: Lab, point: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After `key resume`: one KEK in every token (the old one when the run was undone, the new one
    when it was finished), no transport key or SO pin left, the backup keeps the replaced KEK so
    every bundle verifies, no orphan key, and `key create` works."""
    zone = f"kek{KEK_POINTS.index(point)}.test"
    path = tmp_path_factory.mktemp("kek") / zone
    path.write_text(ZONE_TEXT.format(zone=zone))
    lab.duo("zone", "add", zone, "--file", str(path))
    outcome = kek_replace_at(lab.config, ["a", "b"], zone, point)
    assert outcome.killed_exit != 0, f"{point}: the fault point was never reached"
    assert outcome.problems == [], f"{point}: {outcome}"
    # Before the commit point nothing changed (undone); from it on the run is finished forward.
    assert outcome.keys == (0 if point == "journal:1" else 1), f"{point}: {outcome}"


def test_kek_replace_killed_midway_is_finished_by_the_next_key_command(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`kek init --replace` killed as it hands the new KEK to a node: the backup has the new KEK,
    the nodes the old one. The next key command finishes the replacement first (and says so), so no
    key is ever made under mixed KEKs, then makes its keys under the new KEK everywhere."""
    path = tmp_path_factory.mktemp("kekcrash") / "kekcrash.test"
    path.write_text(ZONE_TEXT.format(zone="kekcrash.test"))
    lab.duo("zone", "add", "kekcrash.test", "--file", str(path))
    # The key origin's watcher resumes a pending journal every 30 s: paused (by its pid) for this
    # test, so that the next key command is the one that meets the half-done replacement.
    [watcher] = [w["pid"] for w in lab.status["watchers"] if w["node"] == "a"]
    os.kill(watcher, signal.SIGSTOP)
    try:
        killed = run(lab.config, "kek", "init", "--replace", fault="op:kek-unwrap:before")
        assert killed.returncode != 0
        status = {t: op(lab.config, t, "kek-status")["fingerprint"] for t in ("a", "b", "backup")}
        assert status["a"] == status["b"] != status["backup"]
        made = run(lab.config, "key", "create", "kekcrash.test")
    finally:
        os.kill(watcher, signal.SIGCONT)
    assert made.returncode == 0, made.stderr
    assert "finished the interrupted kek init --replace" in made.stderr, made.stderr
    assert kek_problems(lab.config, ["a", "b"]) == []
    assert op(lab.config, "a", "kek-status")["fingerprint"] == status["backup"]
    assert consistency(lab.config, ["a", "b"]) == []
