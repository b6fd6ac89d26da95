"""Flatliner drills on a real duo: wipe a node (or both) and rebuild it from the backup (issue 7).

The tests run in order on one lab: refusals first (they must leave everything as it was),
then node b wiped and restored from its live peer, then both nodes wiped and restored, the
first from the backup store's snapshot; last, after `kek init --replace`, node b wiped and
restored (from its peer, then from the snapshot) from bundles made under the retired KEK.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.dns.query import soa_serial
from duo_ods.protocol import ops as P
from duo_ods.transport import transport_for
from tests.integration.conftest import Lab
from tests.support.disk import remove_tree
from tests.support.dnssec import cross_validate, dnskey_rrset

pytestmark = pytest.mark.integration

ZONE = "example.test"


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab("127.0.0.180")


@pytest.fixture(scope="module")
def duo(lab: Lab) -> Duo:
    return load_config(Path(lab.config))


@pytest.fixture(scope="module")
def before(lab: Lab, duo: Duo) -> dict[str, Any]:
    """What must survive every drill: the DNSKEY RRset, the DS and the keys' enforcer states."""
    return {"dnskeys": published(lab, "a"), "ds": ds(lab), "states": states(duo, "a")}


def published(lab: Lab, node: str) -> set[str]:
    return {k.to_text() for k in dnskey_rrset(lab.signed(node, ZONE))}


def ds(lab: Lab) -> list[str]:
    return list(json.loads(lab.duo("--json", "key", "ds", ZONE).stdout)["ds"])


def states(duo: Duo, node: str) -> list[dict[str, Any]]:
    """The zone's keys as the node's enforcer database has them."""
    keys: list[dict[str, Any]] = transport_for(duo).call(node, "key-states", {"zone": ZONE})["zones"][0][
        "keys"
    ]
    return keys


ORDER = {"hidden": 0, "rumoured": 1, "omnipresent": 2}  # how records come in (no key retires here)


def restored_from(restored: list[dict[str, Any]], source: list[dict[str, Any]], since: float) -> list[str]:
    """Where the restored keys differ from the source's. Each record must have the source's state
    and change time, or the same or a later state that the restored enforcer reached itself after the
    restore began: never an earlier one (which `key import` alone would give)."""
    theirs = {k["locator"]: k for k in source}
    if sorted(theirs) != sorted(k["locator"] for k in restored):
        return [f"keys {sorted(k['locator'] for k in restored)} != {sorted(theirs)}"]
    problems = []
    for key in restored:
        origin = {r["type"]: r for r in theirs[key["locator"]]["records"]}
        for rec in key["records"]:
            was = origin[rec["type"]]
            same = (rec["state"], rec["last_change"]) == (was["state"], was["last_change"])
            moved_on = (
                rec["last_change"] >= since
                and rec["state"] in ORDER and was["state"] in ORDER
                and ORDER[rec["state"]] >= ORDER[was["state"]]
            )  # fmt: skip
            # (`>=`: from a snapshot taken a moment before the source's states were read, the restored
            # enforcer may reach the source's own state again by itself, at its own time.)
            if not (same or moved_on):
                problems.append(f"{key['role']} {key['keytag']} {rec['type']}: {rec} != {was}")
        # Set at import and by rollovers only (none runs here): `key import` alone gives others.
        if key["flags"] != theirs[key["locator"]]["flags"]:
            problems.append(
                f"{key['role']} {key['keytag']}: flags {key['flags']} != {theirs[key['locator']]['flags']}"
            )
    return problems


def wipe(lab: Lab, duo: Duo, node: str) -> None:
    """The node dies and its disk is lost: daemons stopped, token, database and zones gone."""
    lab.duo("node", "stop", node)
    remove_tree(duo.node(node).paths.base)


def assert_duo_whole(lab: Lab, before: dict[str, Any]) -> None:
    for node in ("a", "b"):
        assert published(lab, node) == before["dnskeys"]
    assert ds(lab) == before["ds"]
    a, b = lab.signed("a", ZONE), lab.signed("b", ZONE)
    for signed, other in ((a, b), (b, a)):
        result = cross_validate(signed, dnskey_rrset(other))
        assert result.validated > 0
        assert result.failures == []
    report = json.loads(lab.duo("--json", "check").stdout)
    assert report["ok"], report
    messages = [p["message"] for z in report["zones"].values() for p in z["problems"]]
    assert not [m for m in messages if "enforcer key states differ" in m], messages


def test_lab_up_left_a_snapshot_and_keys_in_the_backup(lab: Lab, before: dict[str, Any]) -> None:
    assert list((lab.dir / "backup" / "snapshots").glob("*.json"))
    assert (lab.dir / "backup" / "snapshots").stat().st_mode & 0o077 == 0
    verified = json.loads(lab.duo("--json", "backup", "verify").stdout)
    assert verified["ok"] and verified["bundles"] == 2


def test_restore_refuses_a_running_node(lab: Lab, duo: Duo, before: dict[str, Any]) -> None:
    untouched = states(duo, "b")  # b's own (a's enforcer stamps its changes a second apart at times)
    proc = lab.duo("backup", "restore", "--node", "b", check=False)
    assert proc.returncode != 0
    assert "node b runs" in proc.stderr
    assert states(duo, "b") == untouched


def test_restore_refuses_when_a_key_has_no_bundle_and_touches_nothing(
    lab: Lab, duo: Duo, before: dict[str, Any], tmp_path: Path
) -> None:
    wipe(lab, duo, "b")
    bundles = lab.dir / "backup" / "bundles"
    [moved] = [p for p in bundles.glob("*.json") if json.loads(p.read_text())["role"] == "ZSK"]
    shutil.move(moved, tmp_path / moved.name)
    try:
        proc = lab.duo("backup", "restore", "--node", "b", check=False)
    finally:
        shutil.move(tmp_path / moved.name, moved)
    assert proc.returncode != 0
    assert "no bundle for example.test ZSK" in proc.stderr
    # (b's own watcher still runs in the lab and writes its state and relay folders there: what a
    # restore builds is the token, the enforcer's database and the configs)
    paths = duo.node("b").paths
    built = [p for p in (paths.tokens, paths.kasp_db, paths.conf_xml) if p.exists()]
    assert built == [], f"a refused restore must not start building the node: {built}"


def test_node_b_wiped_is_restored_from_its_peer(lab: Lab, duo: Duo, before: dict[str, Any]) -> None:
    source = states(duo, "a")
    started = time.time()
    result = json.loads(lab.duo("--json", "backup", "restore", "--node", "b").stdout)
    assert result["from"] == "peer"
    assert result["serving"] == [ZONE]
    # Same keys with the same enforcer states (and state change times) as the peer had.
    assert restored_from(states(duo, "b"), source, started) == []
    assert_duo_whole(lab, before)


def test_both_nodes_wiped_are_restored_from_the_backup(lab: Lab, duo: Duo, before: dict[str, Any]) -> None:
    secondary = duo.config.secondaries[0]
    held = soa_serial(secondary.address, secondary.port, ZONE)
    assert held is not None
    lab.duo("backup", "snapshot")
    snapshot = states(duo, "a")
    wipe(lab, duo, "a")
    wipe(lab, duo, "b")
    started = time.time()
    first = json.loads(lab.duo("--json", "backup", "restore", "--node", "a").stdout)
    assert first["from"] == "backup"
    # Above what the secondaries hold, or they would keep the old copy until it expires.
    assert first["serials"][ZONE] > held
    second = json.loads(lab.duo("--json", "backup", "restore", "--node", "b").stdout)
    assert second["from"] == "peer"
    assert restored_from(states(duo, "a"), snapshot, started) == []
    assert restored_from(states(duo, "b"), snapshot, started) == []
    assert_duo_whole(lab, before)


def test_prune_keeps_every_bundle_in_use(lab: Lab) -> None:
    result = json.loads(lab.duo("--json", "backup", "prune").stdout)
    assert result["removed"] == []
    assert result["dead"] == {}
    assert len(list((lab.dir / "backup" / "bundles").glob("*.json"))) == 2


def kek_status(duo: Duo, target: str) -> dict[str, Any]:
    status: dict[str, Any] = transport_for(duo).call(target, P.KEK_STATUS.name, {})
    return status


@pytest.mark.parametrize("source", ["peer", "backup"])
def test_restore_after_kek_replace_opens_the_bundles_made_under_the_retired_kek(
    lab: Lab, duo: Duo, before: dict[str, Any], source: str
) -> None:
    """Issue 12: no bundle becomes unopenable. The zone's bundles were wrapped under the KEK that
    `kek init --replace` retired; a wiped node b is rebuilt from them and signs with the same keys."""
    old = kek_status(duo, "backup")["fingerprint"]
    if source == "peer":
        lab.duo("kek", "init", "--replace")
    new = kek_status(duo, "backup")["fingerprint"]
    assert new != old or source == "backup"
    bundles = [json.loads(p.read_text()) for p in (lab.dir / "backup" / "bundles").glob("*.json")]
    assert bundles and all(b["kek"] != new for b in bundles), "the bundles must be under the retired KEK"
    assert {b["kek"] for b in bundles} <= set(kek_status(duo, "backup")["retired"])
    if source == "backup":
        lab.duo("backup", "snapshot")
    source_states = states(duo, "a")
    wipe(lab, duo, "b")
    started = time.time()
    result = json.loads(lab.duo("--json", "backup", "restore", "--node", "b", "--from", source).stdout)
    assert result["from"] == source
    assert result["kek"] == new
    assert restored_from(states(duo, "b"), source_states, started) == []
    assert_duo_whole(lab, before)
    # b holds the current KEK only: the retired one it needed for the unwrap is gone again
    status_b = kek_status(duo, "b")
    assert status_b["fingerprint"] == new and status_b["retired"] == []
    verified = json.loads(lab.duo("--json", "backup", "verify").stdout)  # custody checks included
    assert verified["ok"], verified
    assert verified["bundles"] == len(bundles)
