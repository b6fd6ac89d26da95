"""`key create ZONE...`: many zones in journalled batches, one request per node and step, a bad zone
reported by name while the others get keys. Orchestration only, on the protocol's fake; the real
path is tests/integration/test_batch.py."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from duo_ods.backup.ops import bundle_of
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError
from duo_ods.keys.flow import create_keys, resume_pending, zones_without_keys
from duo_ods.keys.journal import journal_path, pending
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ZONES = [f"z{i}.test" for i in range(8)]


class ManyZones(FakeNodes):
    """Two nodes and a backup with many zones: what each HSM, enforcer and the backup hold."""

    def __init__(self, duo: Duo, zones: list[str], *, missing_on_b: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.duo = duo
        self.zones = {"a": set(zones), "b": set(zones) - set(missing_on_b)}
        self.hsm: dict[str, set[str]] = {"a": set(), "b": set()}
        self.enforcer: dict[str, dict[str, tuple[str, str]]] = {"a": {}, "b": {}}  # locator -> zone, role
        self.bundles: dict[str, str] = {}  # locator -> zone
        self.journalled_before: list[bool] = []  # each generate/unwrap: were its locators journalled?
        self.fail_on_call: dict[tuple[str, str], int] = {}  # (target, op name) -> fail at that call
        self.counts: dict[tuple[str, str], int] = {}
        self.on(
            P.KEK_STATUS, lambda n, r: P.KekStatusReply(has_kek=True, fingerprint="f" * 32, can_wrap=True)
        )
        self.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
            P.ZoneEntry(name=z, policy="duo", next_change="none") for z in sorted(self.zones[n])
        ]))  # fmt: skip
        self.on(P.KEY_STATES, self.states)
        self.on(P.KEY_GENERATE_BATCH, self.generate)
        self.on(P.KEY_WRAP_BATCH, lambda n, r: P.KeyWrapBatchReply(
            keys=[P.KeyWrapReply(wrapped="d3JhcHBlZA==", kek="f" * 32) for _ in r.locators]))  # fmt: skip
        self.on(P.KEY_UNWRAP_BATCH, self.unwrap)
        self.on(P.KEY_SEAL_BATCH, lambda n, r: P.KeySealBatchReply(
            keys=[P.KeySealReply(sealed_now=True, sealed=True) for _ in r.locators]))  # fmt: skip
        self.on(P.BUNDLE_PUT_BATCH, self.put)
        self.on(P.KEY_IMPORT_BATCH, self.import_)
        self.on(P.ENFORCE, lambda n, r: P.Empty())
        self.on(P.KEY_DELETE, self.delete)
        self.on(P.BUNDLE_REMOVE, lambda n, r: (self.bundles.pop(r.locator, None), P.Empty())[1])

    def call(
        self, node: str, op: str, payload: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        key = (node, op)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.fail_on_call.get(key) == self.counts[key]:
            raise NodeError(f"node {node}: {op} failed")
        return super().call(node, op, payload, timeout)

    def _journalled(self, target: str, locators: list[str]) -> bool:
        left = pending(self.duo)
        made = {(m.target, m.locator) for m in left.made} if left else set()
        return all((target, loc) in made for loc in locators)

    def states(self, node: str, r: P.KeyStatesRequest) -> P.KeyStatesReply:
        zones = []
        for zone in sorted(self.zones[node]):
            if r.zone not in (None, zone):
                continue
            keys = [
                P.KeyStateMsg(zone=zone, locator=loc, role=role, algorithm=13, inception=1, keytag=1,
                              flags={"introducing": 1}, records=[])
                for loc, (z, role) in self.enforcer[node].items() if z == zone
            ]  # fmt: skip
            zones.append(P.ZoneStateMsg(zone=zone, fields={}, keys=keys, dependencies=[]))
        return P.KeyStatesReply(node=node, zones=zones)

    def generate(self, node: str, r: P.KeyGenerateBatchRequest) -> P.KeyGenerateBatchReply:
        self.journalled_before.append(self._journalled(node, [k.locator for k in r.keys]))
        self.hsm[node].update(k.locator for k in r.keys)
        return P.KeyGenerateBatchReply(
            keys=[
                P.KeyGenerateReply(
                    locator=k.locator, bits=256, public=base64.b64encode(os.urandom(64)).decode()
                )
                for k in r.keys
            ]
        )

    def unwrap(self, node: str, r: P.KeyUnwrapBatchRequest) -> P.KeyUnwrapBatchReply:
        self.journalled_before.append(self._journalled(node, [k.locator for k in r.keys]))
        self.hsm[node].update(k.locator for k in r.keys)
        return P.KeyUnwrapBatchReply(keys=[P.KeyUnwrapReply(created=True, confirmed=True) for _ in r.keys])

    def put(self, node: str, r: P.BundleBatchRequest) -> P.DigestsReply:
        self.journalled_before.append(self._journalled("backup", [b.locator for b in r.bundles]))
        for b in r.bundles:
            self.bundles[b.locator] = b.zone
        return P.DigestsReply(digests=[bundle_of(b).digest() for b in r.bundles])

    def import_(self, node: str, r: P.KeyImportBatchRequest) -> P.KeyImportBatchReply:
        imported = []
        for k in r.keys:
            assert k.locator in self.hsm["a"] and k.locator in self.hsm["b"] and k.locator in self.bundles
            imported.append(k.locator not in self.enforcer[node])
            self.enforcer[node][k.locator] = (k.zone, k.role)
        return P.KeyImportBatchReply(imported=imported)

    def delete(self, node: str, r: P.LocatorRequest) -> P.KeyDeleteReply:
        assert r.locator not in self.enforcer[node]  # never take a key from under an enforcer
        had = r.locator in self.hsm[node]
        self.hsm[node].discard(r.locator)
        return P.KeyDeleteReply(deleted=int(had))

    def keyed_zones(self, node: str) -> dict[str, list[str]]:
        zones: dict[str, list[str]] = {}
        for zone, role in self.enforcer[node].values():
            zones.setdefault(zone, []).append(role)
        return {z: sorted(r) for z, r in zones.items()}

    def consistent(self) -> bool:
        used = set(self.enforcer["a"]) | set(self.enforcer["b"])
        return (
            self.enforcer["a"] == self.enforcer["b"]
            and self.hsm["a"] == self.hsm["b"] == used
            and set(self.bundles) == used
        )


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


def test_many_zones_each_get_their_own_pair_in_batches(duo: Duo) -> None:
    fake = ManyZones(duo, ZONES)
    outcomes = create_keys(duo, fake.client, ZONES, None, None, batch=3)
    assert [o.zone for o in outcomes] == ZONES and all(o.ok for o in outcomes)
    assert fake.keyed_zones("a") == {z: ["KSK", "ZSK"] for z in ZONES} and fake.consistent()
    for o in outcomes:  # each zone's own keys, nobody else's
        assert {k.locator for k in o.keys} == {
            loc for loc, (z, _r) in fake.enforcer["a"].items() if z == o.zone
        }
    # one request per node and step for each batch of 3 zones (3 batches), not one per key
    assert fake.counts[("a", "key-generate-batch")] == 3 and fake.counts[("b", "key-unwrap-batch")] == 3
    assert fake.counts[("backup", "bundle-put-batch")] == 3 and fake.counts[("b", "key-import-batch")] == 3
    assert fake.counts[("a", "kek-status")] == 1  # one preflight for the command
    assert all(fake.journalled_before) and len(fake.journalled_before) == 9
    assert pending(duo) is None


def test_a_bad_zone_is_reported_by_name_and_the_others_get_keys(duo: Duo) -> None:
    fake = ManyZones(duo, ZONES, missing_on_b=("z3.test",))
    create_keys(duo, fake.client, ["z1.test"], None, None)  # z1 has keys already
    outcomes = {o.zone: o for o in create_keys(duo, fake.client, ["Bad..Name", *ZONES], None, None)}
    failed = {z for z, o in outcomes.items() if not o.ok}
    assert failed == {"Bad..Name", "z1.test", "z3.test"}
    assert outcomes["z1.test"].has_keys and "has keys already on node a" in str(outcomes["z1.test"].error)
    assert "zone z3.test is not on node b" in str(outcomes["z3.test"].error)
    assert not outcomes["z3.test"].has_keys
    assert set(fake.keyed_zones("a")) == set(ZONES) - {"z3.test"} and fake.consistent()


def test_a_failed_batch_is_undone_and_the_zones_after_it_are_not_tried(duo: Duo) -> None:
    fake = ManyZones(duo, ZONES)
    fake.fail_on_call[("b", "key-unwrap-batch")] = 2  # the second batch's copy to b fails
    outcomes = {o.zone: o for o in create_keys(duo, fake.client, ZONES, None, None, batch=3)}
    assert [z for z in ZONES if outcomes[z].ok] == ZONES[:3]
    assert all("step copy on b" in str(outcomes[z].error) for z in ZONES[3:6])
    assert all(str(outcomes[z].error).startswith("not tried: step copy on b") for z in ZONES[6:])
    # the second batch's keys were taken back everywhere; the first batch's stay in use
    assert set(fake.keyed_zones("a")) == set(ZONES[:3]) and fake.consistent()
    assert pending(duo) is None
    again = create_keys(duo, fake.client, ZONES, None, None, batch=3)  # a re-run makes the rest
    assert [o.ok for o in again] == [False] * 3 + [True] * 5 and all(o.has_keys for o in again[:3])
    assert set(fake.keyed_zones("b")) == set(ZONES) and fake.consistent()


def test_a_batch_killed_past_its_commit_point_is_finished_for_every_zone(duo: Duo) -> None:
    """The journal a kill after the commit left (b never imported) names every zone's keys."""
    fake = ManyZones(duo, ZONES[:4])
    fake.fail_on_call[("b", "key-import-batch")] = 1
    outcomes = create_keys(duo, fake.client, ZONES[:4], None, None)
    assert all("key resume" in str(o.error) for o in outcomes)
    left = pending(duo)
    assert left is not None and left.committed and len(left.details["imports"]) == 8
    assert json.loads(journal_path(duo).read_text())["zone"] == ", ".join(ZONES[:4])
    finished = resume_pending(duo, fake.client)
    assert finished is not None and finished.message.startswith(
        f"finished the interrupted key create of zones {ZONES[0]}"
    )
    assert fake.keyed_zones("b") == {z: ["KSK", "ZSK"] for z in ZONES[:4]} and fake.consistent()


def test_a_batch_killed_before_its_commit_point_is_undone_by_the_next_command(duo: Duo) -> None:
    fake = ManyZones(duo, ZONES[:4])
    fake.fail_on_call[("backup", "bundle-put-batch")] = 1
    fake.fail_on_call[("b", "key-delete")] = 1  # and the undo cannot reach b for a moment
    outcomes = create_keys(duo, fake.client, ZONES[:4], None, None)
    assert all("not all of it could be undone yet" in str(o.error) for o in outcomes)
    left = pending(duo)
    assert left is not None and not left.committed and fake.hsm["b"]
    outcomes = create_keys(duo, fake.client, ZONES[:4], None, None)  # undoes the rest first
    assert all(o.ok for o in outcomes) and fake.consistent() and len(fake.bundles) == 8


def test_zones_without_keys_lists_the_zones_on_every_node_with_no_live_key(duo: Duo) -> None:
    fake = ManyZones(duo, ZONES[:4], missing_on_b=("z2.test",))
    create_keys(duo, fake.client, ["z0.test"], None, None)
    assert zones_without_keys(duo, fake.client) == ["z1.test", "z3.test"]
