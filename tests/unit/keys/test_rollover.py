"""Rollover and DS orchestration when something fails. The transport is a fake: the real path
(real enforcers, HSMs and signers) is tests/integration/test_rollover.py."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from duo_ods.backup.ops import bundle_of
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.keys.flow import KeyFlowError
from duo_ods.keys.rollover import mark_ds, resume, rollover
from duo_ods.protocol import ops as P
from tests.support.configs import THREE_NODES, TWO_NODES
from tests.support.fake_nodes import FakeNodes

CONFIG = TWO_NODES
ZONE = "example.test"


def key(locator: str, role: str, ds: int = 0, tag: int = 1, introducing: int = 1) -> P.KeyStateMsg:
    return P.KeyStateMsg(
        zone=ZONE, locator=locator, role=role, algorithm=13, inception=1, keytag=tag,
        flags={"dsAtParent": ds, "introducing": introducing},
        records=[P.RecordStateMsg(type="dnskey", state="omnipresent", last_change=1, minimize=0, ttl=300)],
    )  # fmt: skip


class Fake(FakeNodes):
    """Two nodes and a backup that answer like the real operations; `fail` makes (node, op) fail."""

    def __init__(self, nodes: str = "ab") -> None:
        super().__init__()
        self.pool: dict[str, list[str]] = {n: [] for n in nodes}
        self.zones: dict[str, dict[str, list[P.KeyStateMsg]]] = {
            n: {ZONE: [key("c1" * 16, "KSK", ds=3, tag=11), key("d1" * 16, "ZSK", tag=22)]} for n in nodes
        }
        self.on(
            P.KEK_STATUS, lambda n, r: P.KekStatusReply(fingerprint="f" * 32, can_wrap=True, has_kek=True)
        )
        self.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
            P.ZoneEntry(name=z, policy="duo", next_change="none") for z in self.zones[n]]))  # fmt: skip
        self.on(P.DB_SCHEMA, lambda n, r: P.DbSchemaReply(schema_version=1, pool=list(self.pool[n])))
        self.on(P.KEY_STATES, self.key_states)
        self.on(P.KEY_GENERATE, lambda n, r: P.KeyGenerateReply(
            locator=r.locator, bits=256, public=base64.b64encode(os.urandom(64)).decode()))  # fmt: skip
        self.on(P.KEY_WRAP, lambda n, r: P.KeyWrapReply(wrapped="d3JhcHBlZA==", kek="f" * 32))
        self.on(P.KEY_UNWRAP, lambda n, r: P.KeyUnwrapReply(created=True, confirmed=True))
        self.on(P.KEY_SEAL, lambda n, r: P.KeySealReply(sealed_now=n == "a", sealed=True))
        self.on(P.BUNDLE_PUT, lambda n, r: P.DigestReply(digest=bundle_of(r.bundle).digest()))
        self.on(P.KEY_POOL_ADD, self.pool_add)
        self.on(P.KEY_POOL_REMOVE, self.pool_remove)
        self.on(P.KEY_ROLLOVER, self.roll)
        self.on(P.KEY_DS, lambda n, r: P.KeyDsReply(node=n, was="submitted", ran=[], at=1.0))
        self.on(P.KEY_DELETE, lambda n, r: P.KeyDeleteReply(deleted=1))
        self.on(P.BUNDLE_REMOVE, lambda n, r: P.Empty())

    def key_states(self, node: str, request: P.KeyStatesRequest) -> P.KeyStatesReply:
        zones = self.zones[node]
        names = [request.zone] if request.zone else list(zones)
        found = [
            P.ZoneStateMsg(zone=z, fields={}, keys=zones[z], dependencies=[]) for z in names if z in zones
        ]
        return P.KeyStatesReply(node=node, zones=found)

    def pool_add(self, node: str, request: P.KeyPoolAddRequest) -> P.AddedReply:
        self.pool[node].append(request.locator)
        return P.AddedReply(added=True)

    def pool_remove(self, node: str, request: P.LocatorRequest) -> P.RemovedReply:
        self.pool[node].remove(request.locator)
        return P.RemovedReply(removed=True)

    def roll(self, node: str, request: P.KeyRolloverRequest) -> P.AtReply:
        for locator in self.pool[node]:
            self.zones[node][request.zone].append(key(locator, request.role, tag=33))
        self.pool[node] = []
        return P.AtReply(node=node, at=1.0)


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    return load_config(tmp_path / "duo.toml")


def test_rollover_puts_one_successor_in_both_pools_and_both_take_it(duo: Duo) -> None:
    fake = Fake()
    done = rollover(duo, fake.client, ZONE, "zsk")
    assert sorted(done.started) == ["a", "b"]
    for node in "ab":
        assert done.locator in [k.locator for k in fake.zones[node][ZONE]]
        assert (node, P.KEY_POOL_ADD) in fake.calls


def test_three_nodes_the_successor_is_copied_to_every_peer_and_rolled_everywhere(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(THREE_NODES)
    duo = load_config(tmp_path / "duo.toml")
    fake = Fake("abc")
    done = rollover(duo, fake.client, ZONE, "zsk")
    assert sorted(done.started) == ["a", "b", "c"]
    assert sorted(n for n, op in fake.calls if op is P.KEY_UNWRAP) == ["b", "c"]  # origin a made it
    assert sorted(n for n, op in fake.calls if op is P.KEY_SEAL) == ["a", "b", "c"]
    for node in "abc":
        assert done.locator in [k.locator for k in fake.zones[node][ZONE]]


def test_three_nodes_a_failed_copy_to_one_peer_undoes_the_key_everywhere(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(THREE_NODES)
    duo = load_config(tmp_path / "duo.toml")
    fake = Fake("abc")
    fake.fail.add(("c", P.KEY_UNWRAP))
    with pytest.raises(KeyFlowError, match="step copy on c"):
        rollover(duo, fake.client, ZONE, "zsk")
    assert fake.pool == {"a": [], "b": [], "c": []}  # no enforcer can take it
    assert (P.KEY_ROLLOVER) not in fake.ops_called()
    deleted = sorted(n for n, op in fake.calls if op is P.KEY_DELETE)
    assert "a" in deleted and "b" in deleted, deleted  # the copies that were made are taken back
    assert ("backup", P.BUNDLE_REMOVE) in fake.calls


def test_three_nodes_one_down_the_rollover_names_it_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(THREE_NODES)
    duo = load_config(tmp_path / "duo.toml")
    fake = Fake("abc")
    fake.fail.add(("c", P.KEK_STATUS))
    with pytest.raises(KeyFlowError, match="step preflight on c"):
        rollover(duo, fake.client, ZONE, "zsk")
    made = {P.KEY_GENERATE, P.KEY_UNWRAP, P.BUNDLE_PUT, P.KEY_POOL_ADD, P.KEY_ROLLOVER}
    assert not made & set(fake.ops_called())


def test_a_rollover_past_its_commit_point_is_never_undone(duo: Duo) -> None:
    """Every `key rollover` failed (or only its reply was lost): the successor stays in both pools,
    the journal stays, and resuming rolls it in on every node."""
    fake = Fake()
    fake.fail = {("a", P.KEY_ROLLOVER), ("b", P.KEY_ROLLOVER)}
    with pytest.raises(KeyFlowError, match=r"step rollover.*key resume"):
        rollover(duo, fake.client, ZONE, "zsk")
    assert len(fake.pool["a"]) == len(fake.pool["b"]) == 1
    assert P.KEY_DELETE not in fake.ops_called() and P.BUNDLE_REMOVE not in fake.ops_called()
    fake.fail = set()
    done = resume(duo, fake.client, ZONE, "zsk")
    assert sorted(done.started) == ["a", "b"] and fake.pool == {"a": [], "b": []}


def test_a_rollover_started_on_one_node_keeps_the_successor_for_resume(duo: Duo) -> None:
    fake = Fake()
    fake.fail = {("b", P.KEY_ROLLOVER)}
    with pytest.raises(KeyFlowError, match="key resume"):
        rollover(duo, fake.client, ZONE, "zsk")
    # a rolled: the successor must stay in b's pool and HSM, not be undone under a's feet.
    assert len(fake.pool["b"]) == 1
    assert ("b", P.KEY_DELETE) not in fake.calls
    fake.fail = set()
    done = resume(duo, fake.client, ZONE, "zsk")
    assert list(done.started) == ["b"]
    assert fake.pool["b"] == []
    assert {k.locator for k in fake.zones["a"][ZONE]} == {k.locator for k in fake.zones["b"][ZONE]}


def test_keys_left_in_a_pool_are_refused_before_any_key_is_made(duo: Duo) -> None:
    fake = Fake()
    fake.pool["b"] = ["ee" * 16]
    with pytest.raises(KeyFlowError, match="node b's spare-key pool holds"):
        rollover(duo, fake.client, ZONE, "ksk")
    assert P.KEY_GENERATE not in fake.ops_called()


def test_a_zone_without_a_key_of_the_role_would_take_the_successor_and_is_refused(duo: Duo) -> None:
    fake = Fake()
    fake.zones["b"]["new.test"] = []
    with pytest.raises(KeyFlowError, match=r"zone new\.test has no ZSK"):
        rollover(duo, fake.client, ZONE, "zsk")
    assert P.KEY_GENERATE not in fake.ops_called()


def test_ds_seen_accepts_a_node_that_is_already_there(duo: Duo) -> None:
    fake = Fake()
    fake.zones["a"][ZONE][0].flags["dsAtParent"] = 2  # submitted; b has it seen (3) already
    result = mark_ds(duo, fake.client, ZONE, 11, "seen")
    assert sorted(result["nodes"]) == ["a", "b"]


def test_ds_gone_for_a_key_whose_ds_is_not_on_its_way_out_is_refused(duo: Duo) -> None:
    fake = Fake()
    with pytest.raises(KeyFlowError, match=r"not ready to be marked gone on a \(dsAtParent 3\)"):
        mark_ds(duo, fake.client, ZONE, 11, "gone")
    assert P.KEY_DS not in fake.ops_called()
