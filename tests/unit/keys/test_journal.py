"""The key lock and journal: a failed or killed key command is undone before its commit point and
finished after it, by the next key command. Orchestration only, on the protocol's fake; the real
path with SIGKILLs at step boundaries is tests/integration/test_crash.py."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from duo_ods.backup.ops import bundle_of
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError
from duo_ods.keys.flow import KeyFlowError, create_key, resume_pending
from duo_ods.keys.journal import KeyLockError, key_lock, pending
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ZONE = "example.test"


class Duo2(FakeNodes):
    """Two nodes and a backup: what each HSM, enforcer and the backup hold."""

    def __init__(self) -> None:
        super().__init__()
        self.hsm: dict[str, set[str]] = {"a": set(), "b": set()}
        self.enforcer: dict[str, dict[str, str]] = {"a": {}, "b": {}}  # locator -> role
        self.bundles: set[str] = set()
        self.lose_reply: set[tuple[str, P.Op[Any, Any]]] = set()  # done on the node, but the reply is lost
        self.on(
            P.KEK_STATUS, lambda n, r: P.KekStatusReply(has_kek=True, fingerprint="f" * 32, can_wrap=True)
        )
        self.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(
            node=n, zones=[P.ZoneEntry(name=ZONE, policy="duo", next_change="none")]))  # fmt: skip
        self.on(P.KEY_STATES, self.states)
        self.on(P.KEY_GENERATE, self.generate)
        self.on(P.KEY_WRAP, lambda n, r: P.KeyWrapReply(wrapped="d3JhcHBlZA==", kek="f" * 32))
        self.on(P.KEY_UNWRAP, self.unwrap)
        self.on(P.KEY_SEAL, lambda n, r: P.KeySealReply(sealed_now=n == "a", sealed=True))
        self.on(P.BUNDLE_PUT, self.put)
        self.on(P.KEY_IMPORT, self.import_)
        self.on(P.ENFORCE, lambda n, r: P.Empty())
        self.on(P.KEY_DELETE, self.delete)
        self.on(P.BUNDLE_REMOVE, self.remove)
        # the batched steps of key create, each key through the one-key handler above
        self.on(P.KEY_GENERATE_BATCH, lambda n, r: P.KeyGenerateBatchReply(
            keys=[self.generate(n, k) for k in r.keys]))  # fmt: skip
        self.on(P.KEY_WRAP_BATCH, lambda n, r: P.KeyWrapBatchReply(
            keys=[P.KeyWrapReply(wrapped="d3JhcHBlZA==", kek="f" * 32) for _ in r.locators]))  # fmt: skip
        self.on(P.KEY_UNWRAP_BATCH, lambda n, r: P.KeyUnwrapBatchReply(
            keys=[self.unwrap(n, k) for k in r.keys]))  # fmt: skip
        self.on(P.KEY_SEAL_BATCH, lambda n, r: P.KeySealBatchReply(
            keys=[P.KeySealReply(sealed_now=n == "a", sealed=True) for _ in r.locators]))  # fmt: skip
        self.on(P.BUNDLE_PUT_BATCH, lambda n, r: P.DigestsReply(
            digests=[self.put(n, P.BundleRequest(bundle=b)).digest for b in r.bundles]))  # fmt: skip
        self.on(P.KEY_IMPORT_BATCH, lambda n, r: P.KeyImportBatchReply(
            imported=[self.import_(n, k).imported for k in r.keys]))  # fmt: skip

    def _maybe_lose(self, node: str, op: P.Op[Any, Any]) -> None:
        if (node, op) in self.lose_reply:
            raise NodeError(f"node {node}: connection lost")

    def states(self, node: str, r: P.KeyStatesRequest) -> P.KeyStatesReply:
        keys = [
            P.KeyStateMsg(zone=ZONE, locator=loc, role=role, algorithm=13, inception=1, keytag=1,
                          flags={"introducing": 1}, records=[])
            for loc, role in self.enforcer[node].items()
        ]  # fmt: skip
        return P.KeyStatesReply(
            node=node, zones=[P.ZoneStateMsg(zone=ZONE, fields={}, keys=keys, dependencies=[])]
        )

    def generate(self, node: str, r: P.KeyGenerateRequest) -> P.KeyGenerateReply:
        self.hsm[node].add(r.locator)
        self._maybe_lose(node, P.KEY_GENERATE_BATCH)
        return P.KeyGenerateReply(
            locator=r.locator, bits=256, public=base64.b64encode(os.urandom(64)).decode()
        )

    def unwrap(self, node: str, r: P.KeyUnwrapRequest) -> P.KeyUnwrapReply:
        self.hsm[node].add(r.locator)
        self._maybe_lose(node, P.KEY_UNWRAP_BATCH)
        return P.KeyUnwrapReply(created=True, confirmed=True)

    def put(self, node: str, r: P.BundleRequest) -> P.DigestReply:
        self.bundles.add(r.bundle.locator)
        return P.DigestReply(digest=bundle_of(r.bundle).digest())

    def import_(self, node: str, r: P.KeyImportRequest) -> P.KeyImportReply:
        assert r.locator in self.hsm[node] and r.locator in self.bundles  # invariant 1
        new = r.locator not in self.enforcer[node]
        self.enforcer[node][r.locator] = r.role
        return P.KeyImportReply(imported=new)

    def delete(self, node: str, r: P.LocatorRequest) -> P.KeyDeleteReply:
        assert r.locator not in self.enforcer[node]  # never take a key from under an enforcer
        had = r.locator in self.hsm[node]
        self.hsm[node].discard(r.locator)
        return P.KeyDeleteReply(deleted=int(had))

    def remove(self, node: str, r: P.LocatorRequest) -> P.Empty:
        self.bundles.discard(r.locator)
        return P.Empty()

    def consistent(self) -> bool:
        """No orphan anywhere, and a key in one enforcer is in both, both HSMs and the backup."""
        used = set(self.enforcer["a"]) | set(self.enforcer["b"])
        return (
            set(self.enforcer["a"]) == set(self.enforcer["b"])
            and self.hsm["a"] == self.hsm["b"] == used
            and self.bundles == used
        )


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


def test_a_clean_run_leaves_no_journal(duo: Duo) -> None:
    fake = Duo2()
    created = create_key(duo, fake.client, ZONE, None, None)
    assert len(created) == 2 and fake.consistent() and len(fake.bundles) == 2
    assert pending(duo) is None


def test_a_lost_reply_is_undone_because_the_locator_was_journalled_first(duo: Duo) -> None:
    fake = Duo2()
    fake.lose_reply = {("b", P.KEY_UNWRAP_BATCH)}  # b made the key, the controller never heard of it
    with pytest.raises(KeyFlowError, match="step copy on b"):
        create_key(duo, fake.client, ZONE, None, None)
    assert fake.hsm == {"a": set(), "b": set()} and fake.bundles == set()
    assert pending(duo) is None


def test_an_undo_that_cannot_finish_stays_journalled_and_the_next_command_finishes_it(duo: Duo) -> None:
    fake = Duo2()
    fake.fail = {("backup", P.BUNDLE_PUT_BATCH), ("b", P.KEY_DELETE)}  # the undo cannot reach b either
    with pytest.raises(KeyFlowError, match="not all of it could be undone yet"):
        create_key(duo, fake.client, ZONE, None, None)
    left = pending(duo)
    assert left is not None and not left.committed and fake.hsm["b"]
    fake.fail = set()
    finished = resume_pending(duo, fake.client)
    assert finished is not None and finished.message.startswith("undid the unfinished key create")
    assert fake.hsm == {"a": set(), "b": set()} and pending(duo) is None


def test_a_run_past_its_commit_point_is_finished_not_undone(duo: Duo) -> None:
    """a imported, b failed: the keys are everywhere, so the next command imports them on b."""
    fake = Duo2()
    fake.fail = {("b", P.KEY_IMPORT_BATCH)}
    with pytest.raises(KeyFlowError, match="key resume"):
        create_key(duo, fake.client, ZONE, None, None)
    assert fake.enforcer["a"] and not fake.enforcer["b"]
    left = pending(duo)
    assert left is not None and left.committed
    fake.fail = set()
    finished = resume_pending(duo, fake.client)
    assert finished is not None and "finished the interrupted key create" in finished.message
    assert fake.consistent() and len(fake.enforcer["b"]) == 2 and pending(duo) is None


def test_key_create_refuses_a_zone_with_live_keys(duo: Duo) -> None:
    fake = Duo2()
    create_key(duo, fake.client, ZONE, None, None)
    made = len(fake.bundles)
    with pytest.raises(KeyFlowError, match=r"has keys already on node a \(KSK 1, ZSK 1\).*key rollover"):
        create_key(duo, fake.client, ZONE, None, None)
    assert len(fake.bundles) == made


def test_two_key_creates_at_once_make_one_key_pair(duo: Duo) -> None:
    fake = Duo2()
    errors: list[Exception] = []

    def run() -> None:
        try:
            create_key(duo, fake.client, ZONE, None, None)
        except KeyFlowError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and "has keys already" in str(errors[0])
    assert len(fake.bundles) == 2 and fake.consistent()


def test_the_lock_waits_then_says_who_holds_it(duo: Duo) -> None:
    held = key_lock(duo, "first")
    held.__enter__()
    try:
        with (
            pytest.raises(KeyLockError, match="another key command holds the key lock"),
            key_lock(duo, "second", wait=0.3),
        ):
            pass
    finally:
        held.__exit__(None, None, None)
