"""check_duo's own logic with fake nodes: zones and key states read once per node, a node whose
enforcer (or database) cannot be asked is marked on every zone and the rest still runs, the
enforcers' KSKs and --ds records checked on every copy. The copies are signed files here; the
real path (real enforcers, signers and a secondary) is tests/integration/test_check.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dns.dnssec
import pytest

import duo_ods.check.run
from duo_ods.check.ds import DsError, parse_ds
from duo_ods.check.model import Thresholds, ZoneReport
from duo_ods.check.run import check_duo
from duo_ods.check.sources import FileSource, Source
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError, TransportError
from duo_ods.ods.kaspdb import KeyStates, RecordState
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes as SharedFake
from tests.unit.check.signer import ORIGIN, Key, signed

ZONE = "example.test"


def key_states(
    key: Key, role: str, locator: str, introducing: int = 1, rrsigdnskey: str = "omnipresent"
) -> dict[str, Any]:
    records = tuple(
        RecordState(t, rrsigdnskey if t == "rrsigdnskey" else "omnipresent", 1_700_000_000, 0, 300)
        for t in ("ds", "dnskey", "rrsigdnskey")
    )
    return KeyStates(
        ZONE,
        locator,
        role,
        13,
        int(time.time()) - 3600,  # a key in its lifetime (else check warns it is past it: issue 15)
        key.tag,
        {"introducing": introducing, "dsAtParent": 3},
        records,
    ).to_json()


class FakeNodes(SharedFake):
    """zone-list needs the running enforcer; key-states reads the database."""

    def __init__(
        self, keys: list[dict[str, Any]], enforcer_down: frozenset[str] = frozenset(),
        db_down: frozenset[str] = frozenset(), signer_down: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        super().__init__()
        self.keys = [P.KeyStateMsg.model_validate(k) for k in keys]
        self.enforcer_down = enforcer_down
        self.db_down = db_down
        self.signer_down = signer_down
        self.on(P.ZONE_LIST, self.zone_list)
        self.on(P.KEY_STATES, self.key_states)
        self.on(P.STATUS, self.status)

    def status(self, node: str, request: P.Empty) -> P.StatusReply:
        if node in self.db_down:
            raise TransportError(f"node {node}: status failed: no route to host")
        pids = {"signerd": None if node in self.signer_down else 10, "enforcerd": 11}
        return P.StatusReply(
            node=node, address="127.0.0.1", port=53, initialised=True, has_database=True, daemons=pids,
            input_dir="in", zones=[],
        )  # fmt: skip

    def zone_list(self, node: str, request: P.Empty) -> P.ZoneListReply:
        if node in self.enforcer_down:
            raise NodeError(f"node {node}: ods-enforcer zone list exited 1: connect failed")
        return P.ZoneListReply(node=node, zones=[P.ZoneEntry(name=ZONE, policy="duo", next_change="none")])

    def key_states(self, node: str, request: P.KeyStatesRequest) -> P.KeyStatesReply:
        if node in self.db_down:
            raise TransportError(f"node {node}: key-states failed: no route to host")
        zone = P.ZoneStateMsg(zone=ZONE, fields={}, keys=self.keys, dependencies=[])
        return P.KeyStatesReply(node=node, zones=[zone])


@pytest.fixture(scope="module")
def keys() -> tuple[Key, Key]:
    return Key.make(flags=257), Key.make()


@pytest.fixture
def duo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: tuple[Key, Key]) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    duo = load_config(tmp_path / "duo.toml")
    zone = signed(ksk=keys[0], zsk=keys[1], now=int(time.time()))
    copies: list[Source] = []
    for name in ("a", "b", "ns1"):
        zone.to_file(str(tmp_path / name), relativize=False, want_origin=True)
        copies.append(FileSource(name, tmp_path / name))
    monkeypatch.setattr(duo_ods.check.run, "live_sources", lambda _duo, zone: copies)
    return duo


def shown(reports: list[ZoneReport]) -> list[str]:
    return [f"{p.severity} [{p.source}] {p.message}" for r in reports for p in r.problems]


def test_healthy(duo: Duo, keys: tuple[Key, Key]) -> None:
    nodes = FakeNodes([key_states(keys[0], "KSK", "c1" * 16), key_states(keys[1], "ZSK", "d1" * 16)])
    reports = check_duo(duo, nodes.client, [], Thresholds(), workers=1)
    assert [r.zone for r in reports] == [ZONE] and shown(reports) == []
    # One read per node for every zone, not one per zone: the whole database at once.
    assert sorted((n, op.name) for n, op in nodes.calls) == [
        ("a", "key-states"), ("a", "status"), ("a", "zone-list"),
        ("b", "key-states"), ("b", "status"), ("b", "zone-list"),
    ]  # fmt: skip


def test_a_stopped_signer_is_named_with_its_node(duo: Duo, keys: tuple[Key, Key]) -> None:
    nodes = FakeNodes([key_states(keys[0], "KSK", "c1" * 16)], signer_down=frozenset("b"))
    reports = check_duo(duo, nodes.client, [], Thresholds(), workers=1)
    assert shown(reports)[0] == (
        "warning [b] ods-signerd is not running on node b (`ods-duo node start b`; its watcher starts "
        "a daemon that died again by itself)"
    )


def test_a_node_whose_enforcer_is_down_is_marked_and_the_rest_runs(duo: Duo, keys: tuple[Key, Key]) -> None:
    nodes = FakeNodes([key_states(keys[0], "KSK", "c1" * 16)], enforcer_down=frozenset("b"))
    reports = check_duo(duo, nodes.client, [], Thresholds(), workers=1)
    assert [r.zone for r in reports] == [ZONE]  # named by a's enforcer
    assert reports[0].ok and reports[0].signatures.keys() == {"a", "b", "ns1"}
    assert shown(reports) == [
        "warning [b] its enforcer does not answer (node b: ods-enforcer zone list exited 1: connect failed); "
        "key maintenance on this node is stopped; key states read from its database"
    ]
    # Both enforcers down: the zones come from the databases, and both nodes are marked.
    nodes = FakeNodes([key_states(keys[0], "KSK", "c1" * 16)], enforcer_down=frozenset("ab"))
    reports = check_duo(duo, nodes.client, [], Thresholds(), workers=1)
    assert [r.zone for r in reports] == [ZONE] and reports[0].ok
    assert [p.source for p in reports[0].problems] == ["a", "b"]


def test_a_node_that_cannot_be_reached(duo: Duo, keys: tuple[Key, Key]) -> None:
    nodes = FakeNodes(
        [key_states(keys[0], "KSK", "c1" * 16)], enforcer_down=frozenset("b"), db_down=frozenset("b")
    )
    reports = check_duo(duo, nodes.client, [ZONE], Thresholds(), workers=1)
    assert reports[0].ok
    assert shown(reports) == [
        "warning [b] its enforcer does not answer (node b: ods-enforcer zone list exited 1: connect failed); "
        "key maintenance on this node is stopped",
        "warning [b] cannot read its enforcer database: node b: key-states failed: no route to host",
    ]
    nodes = FakeNodes([], enforcer_down=frozenset("ab"), db_down=frozenset("ab"))
    with pytest.raises(NodeError, match="cannot list the zones to check"):
        check_duo(duo, nodes.client, [], Thresholds(), workers=1)


def test_copies_not_signed_by_the_enforcers_ksk(duo: Duo, keys: tuple[Key, Key]) -> None:
    other = Key.make(flags=257)
    withdrawn = key_states(keys[0], "KSK", "c1" * 16, introducing=0, rrsigdnskey="hidden")
    reports = check_duo(
        duo, FakeNodes([key_states(other, "KSK", "c2" * 16), withdrawn]).client, [], Thresholds(), workers=1
    )
    expected = (
        f"the DNSKEY RRset is not signed by a KSK that the enforcers use (KSK key tags {other.tag}; "
        f"signed by {keys[0].tag})"
    )
    assert shown(reports) == [f"critical [{n}] {expected}" for n in ("a", "b", "ns1")]


@pytest.mark.parametrize("state", ["omnipresent", "unretentive"])
def test_a_ksk_being_rolled_out_still_signs_the_dnskey_rrset(
    duo: Duo, keys: tuple[Key, Key], state: str
) -> None:
    """A KSK rollover clears the old key's `introducing` at its start; the old key's signature over
    the DNSKEY RRset stays until the new key's is out (the signer may not have it yet)."""
    new = key_states(Key.make(flags=257), "KSK", "c2" * 16)
    old = key_states(keys[0], "KSK", "c1" * 16, introducing=0, rrsigdnskey=state)
    reports = check_duo(duo, FakeNodes([new, old]).client, [], Thresholds(), workers=1)
    assert not [p for p in shown(reports) if "not signed by a KSK" in p]


def test_ds_applies_to_every_copy(duo: Duo, keys: tuple[Key, Key]) -> None:
    nodes = FakeNodes([key_states(keys[0], "KSK", "c1" * 16)])
    good = parse_ds(f"{ZONE}. IN DS {dns.dnssec.make_ds(ORIGIN, keys[0].dnskey, 'SHA256')}")
    assert shown(check_duo(duo, nodes.client, [], Thresholds(), workers=1, parent_ds={ZONE: [good]})) == []
    wrong = parse_ds(f"{ZONE}. IN DS {dns.dnssec.make_ds(ORIGIN, Key.make(flags=257).dnskey, 'SHA256')}")
    problems = shown(check_duo(duo, nodes.client, [], Thresholds(), workers=1, parent_ds={ZONE: [wrong]}))
    assert [p.split(" the ")[0] for p in problems] == ["critical [a]", "critical [b]", "critical [ns1]"]
    assert all(f"not signed by a key that the DS given with --ds points to (DS key tags {wrong.key_tag};" in p
               for p in problems)  # fmt: skip
    # Rolling: the parent has the old and the new DS; one of them pointing to the signing key is enough.
    assert (
        shown(check_duo(duo, nodes.client, [], Thresholds(), workers=1, parent_ds={ZONE: [wrong, good]}))
        == []
    )
    other = parse_ds(f"other.test. IN DS {dns.dnssec.make_ds(ORIGIN, keys[0].dnskey, 'SHA256')}")
    with pytest.raises(
        DsError, match=r"a DS for other\.test, not for a zone being checked \(example\.test\)"
    ):
        check_duo(duo, nodes.client, [], Thresholds(), workers=1, parent_ds={"other.test": [other]})
