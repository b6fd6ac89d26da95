"""A zone back after removal gets its keys from before removal (keys/reuse.py), within the backup's
retention; else new keys, said in one line. Orchestration only, on the protocol's fake; the real
path (real enforcers, HSMs, delv against the old DS) is tests/integration/test_zone_return.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.keys import reuse
from duo_ods.keys.flow import create_key
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.unit.keys.test_journal import ZONE, Duo2

SEEN = {"introducing": 1, "dsAtParent": 3, "publish": 1, "activeKsk": 1, "activeZsk": 0}


class Returning(Duo2):
    """Duo2 with the backup's bundle list, removal, and the enforcer state each node was given."""

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[str, P.Bundle] = {}
        self.adopted: dict[str, list[P.ZoneStateMsg]] = {}
        self.removed = False
        self.on(P.BUNDLE_LIST, lambda n, r: P.BundleListReply(bundles=list(self.held.values())))
        self.on(P.KEY_STATES_ADOPT, self.adopt)

    def put(self, node: str, r: P.BundleRequest) -> P.DigestReply:
        self.held[r.bundle.locator] = r.bundle
        return super().put(node, r)

    def remove(self, node: str, r: P.LocatorRequest) -> P.Empty:
        self.held.pop(r.locator, None)
        return super().remove(node, r)

    def states(self, node: str, r: P.KeyStatesRequest) -> P.KeyStatesReply:
        reply = super().states(node, r)
        if self.removed:
            return P.KeyStatesReply(node=node, zones=[])
        ds = P.RecordStateMsg(type="ds", state="omnipresent", last_change=5, minimize=0, ttl=300)
        keys = [k.model_copy(update={"flags": dict(SEEN), "records": [ds]}) for k in reply.zones[0].keys]
        zone = reply.zones[0].model_copy(update={"keys": keys})  # as the enforcer has them: DS seen
        return P.KeyStatesReply(node=node, zones=[zone])

    def remove_zone(self) -> None:
        """`zone delete` on every node: the enforcers forget the keys, the HSMs keep them."""
        self.removed = True
        self.enforcer = {"a": {}, "b": {}}

    def add_zone(self) -> None:
        self.removed = False

    def adopt(self, node: str, r: P.KeyStatesWriteRequest) -> P.KeyStatesWriteReply:
        assert all(k.locator in self.enforcer[node] for z in r.zones for k in z.keys)  # imported first
        self.adopted[node] = r.zones
        return P.KeyStatesWriteReply(node=node, keys=sum(len(z.keys) for z in r.zones))


@pytest.fixture
def duo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Duo:
    monkeypatch.setattr(reuse, "IMPORT_SETTLE", 0.0)
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


def removed_with_keys(duo: Duo) -> tuple[Returning, list[str]]:
    fake = Returning()
    before = sorted(k.locator for k in create_key(duo, fake.client, ZONE, None, None))
    record = reuse.remember_keys(duo, fake.client, ZONE)
    assert record is not None and sorted(k.locator for k in record.states.keys) == before
    fake.remove_zone()
    fake.add_zone()
    fake.calls.clear()
    return fake, before


def test_a_returning_zone_gets_its_keys_back_with_their_state(duo: Duo) -> None:
    fake, before = removed_with_keys(duo)
    back = create_key(duo, fake.client, ZONE, None, None)  # the watcher's (and key create's) path
    assert sorted(k.locator for k in back) == before
    assert not {P.KEY_GENERATE, P.KEY_GENERATE_BATCH} & set(fake.ops_called())  # no new key, so no new DS
    assert sorted(fake.enforcer["a"]) == sorted(fake.enforcer["b"]) == before
    for node in ("a", "b"):  # the state at removal: the DS is still seen at the parent
        (state,) = fake.adopted[node]
        assert [k.flags["dsAtParent"] for k in state.keys] == [3, 3]
    assert reuse.load_removed(duo, ZONE) is None  # used up


def test_zone_add_reuses_and_says_the_ds_stays(duo: Duo) -> None:
    fake, before = removed_with_keys(duo)
    got = reuse.returning_zone_keys(duo, fake.client, ZONE)
    assert got is not None and got.outcome == "reused"
    assert "the DS stays the same" in got.message and sorted(k.locator for k in got.keys) == before


def test_past_retention_new_keys_and_one_line_saying_the_ds_changes(duo: Duo) -> None:
    fake, before = removed_with_keys(duo)
    path = reuse.record_path(duo, ZONE)
    data = json.loads(path.read_text())
    data["removed"] -= 91 * 86400  # the default retention is P90D
    path.write_text(json.dumps(data))
    got = reuse.returning_zone_keys(duo, fake.client, ZONE)
    assert got is not None and got.outcome == "expired"
    assert got.message.startswith(f"zone {ZONE}: NEW keys, so the DS changes")
    assert "past the backup's retention (P90D)" in got.message and "\n" not in got.message
    assert {P.KEY_GENERATE, P.KEY_GENERATE_BATCH} & set(fake.ops_called())
    assert not {k.locator for k in got.keys} & set(before)
    assert reuse.load_removed(duo, ZONE) is None


def test_new_keys_asked_for(duo: Duo) -> None:
    fake, before = removed_with_keys(duo)
    got = reuse.returning_zone_keys(duo, fake.client, ZONE, new_keys=True)
    assert got is not None and got.outcome == "declined" and "(--new-keys)" in got.message
    assert not set(k.locator for k in got.keys) & set(before) and len(got.keys) == 2


def test_a_pruned_bundle_means_new_keys(duo: Duo) -> None:
    fake, before = removed_with_keys(duo)
    fake.held.pop(before[0])
    got = reuse.returning_zone_keys(duo, fake.client, ZONE)
    assert got is not None and got.outcome == "expired"
    assert "the backup no longer holds the bundle of" in got.message


def test_no_record_no_change(duo: Duo) -> None:
    fake = Returning()
    assert reuse.returning_zone_keys(duo, fake.client, ZONE) is None
    assert fake.calls == []
