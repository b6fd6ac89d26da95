"""backup restore's journal: a record before the node is touched and before each step that makes
something; a restore that failed (or was killed) half way is finished forward by running it again or
by `key resume`, never refused for the node it half built. Orchestration only, on the protocol's
fake; the real path with SIGKILLs at step boundaries is tests/integration/test_crash.py."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from duo_ods.backup import restore
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError, NodeError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.flow import resume_pending
from duo_ods.keys.journal import Journal, Recorder, journal_path, parked_path, pending
from duo_ods.protocol import ops as P
from duo_ods.zones.inputs import Candidate
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ZONE = "example.test"
TEXT = "example.test. 300 IN SOA ns1.example.test. h.example.test. 1 3600 600 864000 300\n"
KSK, ZSK, OLD = "a" * 32, "b" * 32, "c" * 32


def key(locator: str, role: str) -> P.KeyStateMsg:
    return P.KeyStateMsg(
        zone=ZONE, locator=locator, role=role, algorithm=13, inception=1, keytag=1,
        flags={"introducing": 1}, records=[],
    )  # fmt: skip


def bundle(locator: str, role: str, kek: str = "f" * 32) -> KeyBundle:
    public = base64.b64encode(bytes(64)).decode()
    return KeyBundle(
        zone=ZONE, role=role, algorithm=13, bits=256, locator=locator, inception=1, origin="a",
        public=public, wrapped=base64.b64encode(b"wrapped").decode(), kek=kek, keytag=1,
    )  # fmt: skip


class Node(FakeNodes):
    """Node b being rebuilt: what its token and enforcer hold."""

    def __init__(self) -> None:
        super().__init__()
        self.hsm: set[str] = set()
        self.enforcer: set[str] = set()
        self.running = False
        self.on(P.INIT, lambda n, r: P.InitReply.model_validate({"layout": "lab", "node": n}))
        self.on(P.KEY_UNWRAP, self.unwrap)
        self.on(P.START, self.start)
        self.on(P.STOP, self.stop)
        self.on(P.POLICY_IMPORT, lambda n, r: P.OutputReply(node=n, output=""))
        self.on(P.ZONE_ADD_BATCH, lambda n, r: P.ZoneBatchReply(node=n, added=[z.zone for z in r.zones]))
        self.on(P.KEY_IMPORT, self.import_)
        self.on(P.KEY_STATES_WRITE, lambda n, r: P.KeyStatesWriteReply(node=n, keys=len(self.enforcer)))
        self.on(P.ENFORCE, lambda n, r: P.Empty())
        self.on(P.KEY_DELETE, self.delete)
        self.retired: set[str] = set()  # retired KEKs in b's token
        self.unwrapped_under: dict[str, str | None] = {}  # locator -> the KEK the request named
        self.on(P.KEK_DROP_RETIRED, self.drop_retired)

    def drop_retired(self, node: str, r: P.Empty) -> P.CountReply:
        count = len(self.retired)
        self.retired.clear()
        return P.CountReply(count=count)

    def unwrap(self, node: str, r: P.KeyUnwrapRequest) -> P.KeyUnwrapReply:
        if r.kek is not None and r.kek != "f" * 32:
            assert r.kek in self.retired, "a bundle under a retired KEK needs that KEK in the node first"
        self.unwrapped_under[r.locator] = r.kek
        created = r.locator not in self.hsm
        self.hsm.add(r.locator)
        return P.KeyUnwrapReply(created=created, confirmed=True)

    def start(self, node: str, r: P.Empty) -> P.StartReply:
        self.running = True
        return P.StartReply(node=node, pids={"signerd": 1, "enforcerd": 2})

    def stop(self, node: str, r: P.Empty) -> P.StopReply:
        self.running = False
        return P.StopReply(node=node, daemons={})

    def import_(self, node: str, r: P.KeyImportRequest) -> P.KeyImportReply:
        assert r.locator in self.hsm
        new = r.locator not in self.enforcer
        self.enforcer.add(r.locator)
        return P.KeyImportReply(imported=new)

    def delete(self, node: str, r: P.LocatorRequest) -> P.KeyDeleteReply:
        assert r.locator not in self.enforcer
        had = r.locator in self.hsm
        self.hsm.discard(r.locator)
        return P.KeyDeleteReply(deleted=int(had))


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The peer's state (its keys can be changed by a test) and no DNS: the rebuild steps only."""
    state: dict[str, Any] = {"keys": [key(KSK, "KSK"), key(ZSK, "ZSK")]}
    bundles = {b.locator: b for b in (bundle(KSK, "KSK"), bundle(ZSK, "ZSK"), bundle(OLD, "ZSK"))}
    state["bundles"] = bundles

    def source_state(duo: Duo, client: Any, node: str, source: str | None) -> tuple[str, P.Snapshot]:
        states = P.ZoneStateMsg(zone=ZONE, fields={}, keys=state["keys"], dependencies=[])
        return "peer", P.Snapshot(
            taken=1.0, node="a", zones=[P.ZoneExport(zone=ZONE, text=TEXT, states=states)]
        )

    class Caught:
        def to_json(self) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(restore, "_source_state", source_state)
    monkeypatch.setattr(restore, "_best_inputs", lambda *a: {ZONE: Candidate("record", TEXT, 1.0)})
    monkeypatch.setattr(restore, "_older_than_secondaries", lambda *a: [])
    monkeypatch.setattr(restore, "_preflight", lambda *a, **k: bundles)
    monkeypatch.setattr(restore, "_copy_kek", lambda *a, **k: "f" * 32)
    monkeypatch.setattr(restore, "_wait_serving", lambda duo, node, zones: zones)
    monkeypatch.setattr(restore, "_catch_up", lambda *a, **k: None)
    monkeypatch.setattr(restore, "catch_up", lambda *a: Caught())
    monkeypatch.setattr(restore, "ENFORCE_SETTLE_MAX", 0.0)
    return state


def test_a_clean_restore_leaves_no_journal(duo: Duo, source: dict[str, Any]) -> None:
    fake = Node()
    result = restore.restore_node(duo, fake.client, "b")
    assert "resumed" not in result and pending(duo) is None
    assert fake.hsm == fake.enforcer == {KSK, ZSK} and fake.running


def test_a_failed_restore_keeps_its_journal_and_running_it_again_finishes_it(
    duo: Duo, source: dict[str, Any]
) -> None:
    fake = Node()
    fake.fail.add(("b", P.KEY_IMPORT))
    with pytest.raises(DuoError, match="run `ods-duo backup restore --node b` again"):
        restore.restore_node(duo, fake.client, "b")
    left = pending(duo)
    assert left is not None and left.command == "backup restore" and left.details["node"] == "b"
    # begin, init, KEK, two unwraps, zones, the first import: each on disk before its step
    assert left.details["steps"] == [
        "init node and token", "copy KEK", f"unwrap {KSK}", f"unwrap {ZSK}", "add zones",
        f"import {ZONE} {KSK}",
    ]  # fmt: skip
    assert not fake.running, "a failed restore stops the half-built node"
    fake.fail.clear()
    result = restore.restore_node(duo, fake.client, "b")
    assert "finished the interrupted backup restore of node b" in result["resumed"]
    assert pending(duo) is None
    assert fake.hsm == fake.enforcer == {KSK, ZSK} and fake.running


def test_key_resume_finishes_a_restore_and_drops_keys_the_source_no_longer_uses(
    duo: Duo, source: dict[str, Any]
) -> None:
    fake = Node()
    source["keys"] = [key(KSK, "KSK"), key(OLD, "ZSK")]
    fake.fail.add(("b", P.START))
    with pytest.raises(DuoError):
        restore.restore_node(duo, fake.client, "b")
    assert fake.hsm == {KSK, OLD}
    fake.fail.clear()
    source["keys"] = [key(KSK, "KSK"), key(ZSK, "ZSK")]  # the peer rolled its ZSK meanwhile
    finished = resume_pending(duo, fake.client)
    assert finished is not None and "finished the interrupted backup restore" in finished.message
    assert not journal_path(duo).exists()
    assert fake.hsm == fake.enforcer == {KSK, ZSK}, "the old ZSK the killed run unwrapped is gone"


def test_a_restore_of_another_node_finishes_the_pending_one_first(duo: Duo, source: dict[str, Any]) -> None:
    fake = Node()
    fake.fail.add(("b", P.ENFORCE))
    with pytest.raises(DuoError):
        restore.restore_node(duo, fake.client, "b")
    fake.fail.clear()
    restore.restore_node(duo, fake.client, "a")
    assert pending(duo) is None
    assert [n for n, op in fake.calls if op == P.ENFORCE] == ["b", "b", "a"]


RETIRED = "e" * 32  # a KEK that `kek init --replace` retired; the KSK's bundle was made under it


def hand_over_retired(fake: Node) -> list[P.KekUnwrapRequest]:
    """The backup and b's side of send_kek for a retired KEK; returns what b was asked to unwrap."""
    asked: list[P.KekUnwrapRequest] = []
    offer = P.TransportKeyReply(public=base64.b64encode(b"spki").decode(), fingerprint="d" * 64)
    fake.on(P.KEK_STATUS, lambda n, r: P.KekStatusReply(has_kek=True, fingerprint="f" * 32,
                                                        retired=sorted(fake.retired)))  # fmt: skip
    fake.on(P.KEK_TRANSPORT_KEY, lambda n, r: offer)
    fake.on(P.KEK_PIN, lambda n, r: P.LabelReply(label="pin"))
    fake.on(P.KEK_UNPIN, lambda n, r: P.CountReply(count=1))

    def wrap_for(n: str, r: P.KekWrapForRequest) -> P.BlobReply:
        assert r.retired == RETIRED, "the backup hands on the retired KEK the bundle names"
        return P.BlobReply(blob=base64.b64encode(b"blob").decode())

    def unwrap(n: str, r: P.KekUnwrapRequest) -> P.FingerprintReply:
        asked.append(r)
        assert r.retired is not None
        fake.retired.add(r.retired)
        return P.FingerprintReply(fingerprint=r.retired)

    fake.on(P.KEK_WRAP_FOR, wrap_for)
    fake.on(P.KEK_UNWRAP, unwrap)
    return asked


def test_a_bundle_under_a_retired_kek_gets_that_kek_handed_over_and_dropped_after(
    duo: Duo, source: dict[str, Any]
) -> None:
    fake = Node()
    source["bundles"][KSK] = bundle(KSK, "KSK", kek=RETIRED)
    asked = hand_over_retired(fake)
    restore.restore_node(duo, fake.client, "b")
    assert [r.retired for r in asked] == [RETIRED]
    assert fake.unwrapped_under == {KSK: RETIRED, ZSK: "f" * 32}
    assert fake.retired == set(), "the node drops the retired KEK once its keys are unwrapped"
    assert fake.hsm == fake.enforcer == {KSK, ZSK} and pending(duo) is None


NEW = "d" * 32  # a key an interrupted `key create` made: imported on a, not on the lost node b


def test_a_key_command_that_needs_the_lost_node_is_finished_after_its_restore(
    duo: Duo, source: dict[str, Any]
) -> None:
    """A key create killed past its commit point, then node b lost: finishing it needs b, and the
    restore must not wait for it (it never could). The restore sets it aside, rebuilds b from a
    (which has the new key), then finishes it: b's enforcer gets the key too."""
    fake = Node()
    source["keys"] = [key(KSK, "KSK"), key(ZSK, "ZSK"), key(NEW, "ZSK")]
    source["bundles"][NEW] = bundle(NEW, "ZSK")
    imported: list[tuple[str, str]] = []

    def import_batch(node: str, r: P.KeyImportBatchRequest) -> P.KeyImportBatchReply:
        if node == "b" and not fake.running:
            raise NodeError("node b: enforcer is not running")
        imported.extend((node, k.locator) for k in r.keys)
        return P.KeyImportBatchReply(imported=[True for _ in r.keys])

    fake.on(P.KEY_IMPORT_BATCH, import_batch)
    request = P.KeyImportRequest(zone=ZONE, locator=NEW, role="ZSK", algorithm=13, bits=256, inception=1)
    Recorder(journal_path(duo), Journal("key create", ZONE, 1.0, committed=True,
                                        details={"imports": [request.model_dump(mode="json")]}))  # fmt: skip
    with pytest.raises(DuoError):  # what every key command meets while b is lost
        resume_pending(duo, fake.client)
    result = restore.restore_node(duo, fake.client, "b")
    assert result["finished"] == f"the unfinished key create of {ZONE} was finished after the restore"
    assert ("b", NEW) in imported and NEW in fake.hsm and NEW in fake.enforcer
    assert pending(duo) is None and not parked_path(duo).exists()


def test_a_restore_killed_after_setting_a_key_command_aside_puts_it_back(
    duo: Duo, source: dict[str, Any]
) -> None:
    """The restore failed half way: the key command set aside is put back once the restore is
    finished, for `key resume` (or the next key command) to finish."""
    fake = Node()
    fake.on(P.KEY_IMPORT_BATCH, lambda n, r: (_ for _ in ()).throw(NodeError(f"node {n}: down")))
    request = P.KeyImportRequest(zone=ZONE, locator=NEW, role="ZSK", algorithm=13, bits=256, inception=1)
    Recorder(journal_path(duo), Journal("key create", ZONE, 1.0, committed=True,
                                        details={"imports": [request.model_dump(mode="json")]}))  # fmt: skip
    fake.fail.add(("b", P.ENFORCE))
    with pytest.raises(DuoError):
        restore.restore_node(duo, fake.client, "b")
    assert parked_path(duo).exists() and pending(duo).command == "backup restore"  # type: ignore[union-attr]
    fake.fail.clear()
    result = restore.restore_node(duo, fake.client, "b")
    assert "finished the interrupted backup restore" in result["resumed"]
    left = pending(duo)
    assert left is not None and left.command == "key create" and not parked_path(duo).exists()
