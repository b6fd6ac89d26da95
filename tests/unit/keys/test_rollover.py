"""Rollover and DS orchestration when something fails. The transport is a fake: the real path
(real enforcers, HSMs and signers) is tests/integration/test_rollover.py."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.flow import KeyFlowError
from duo_ods.keys.rollover import mark_ds, resume, rollover
from tests.support.configs import TWO_NODES

CONFIG = TWO_NODES
ZONE = "example.test"


def key(locator: str, role: str, ds: int = 0, tag: int = 1, introducing: int = 1) -> dict[str, Any]:
    return {
        "locator": locator, "role": role, "keytag": tag,
        "flags": {"dsAtParent": ds, "introducing": introducing},
        "records": [{"type": "dnskey", "state": "omnipresent", "last_change": 1}],
    }  # fmt: skip


class Fake:
    """Two nodes and a backup that answer like the real operations; `fail` makes (node, op) fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: set[tuple[str, str]] = set()
        self.pool: dict[str, list[str]] = {"a": [], "b": []}
        self.zones: dict[str, dict[str, list[dict[str, Any]]]] = {
            n: {ZONE: [key("k1" * 16, "KSK", ds=3, tag=11), key("z1" * 16, "ZSK", tag=22)]} for n in "ab"
        }

    def call(self, node: str, op: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append((node, op))
        p = payload or {}
        if (node, op) in self.fail:
            raise NodeError(f"node {node}: {op} failed")
        if op == "kek-status":
            return {"fingerprint": "f" * 32, "can_wrap": True, "has_kek": True}
        if op == "zone-list":
            return {"zones": [{"name": z} for z in self.zones[node]]}
        if op == "db-schema":
            return {"schema": 1, "pool": list(self.pool[node])}
        if op == "key-states":
            zones = self.zones[node]
            names = [p["zone"]] if p.get("zone") else list(zones)
            return {"zones": [{"zone": z, "keys": zones[z]} for z in names if z in zones]}
        if op == "key-generate":
            return {"locator": "c0" * 16, "bits": 256, "public": base64.b64encode(os.urandom(64)).decode()}
        if op == "key-wrap":
            return {"wrapped": "d3JhcHBlZA==", "kek": "f" * 32}
        if op == "key-unwrap":
            return {"confirmed": True}
        if op == "bundle-put":
            return {"digest": KeyBundle.from_json(p["bundle"]).digest()}
        if op == "key-pool-add":
            self.pool[node].append(p["locator"])
            return {"added": True}
        if op == "key-pool-remove":
            self.pool[node].remove(p["locator"])
            return {"removed": True}
        if op == "key-rollover":
            for locator in self.pool[node]:
                self.zones[node][p["zone"]].append(key(locator, p["role"], tag=33))
            self.pool[node] = []
            return {"at": 1.0}
        if op == "key-ds":
            return {"at": 1.0, "ran": []}
        if op in {"key-delete", "bundle-remove"}:
            return {}
        raise AssertionError(op)


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    return load_config(tmp_path / "duo.toml")


def test_rollover_puts_one_successor_in_both_pools_and_both_take_it(duo: Duo) -> None:
    fake = Fake()
    done = rollover(duo, fake, ZONE, "zsk")
    assert sorted(done.started) == ["a", "b"]
    for node in "ab":
        assert done.locator in [k["locator"] for k in fake.zones[node][ZONE]]
        assert (node, "key-pool-add") in fake.calls


def test_a_rollover_no_enforcer_took_is_undone_everywhere(duo: Duo) -> None:
    fake = Fake()
    fake.fail = {("a", "key-rollover"), ("b", "key-rollover")}
    with pytest.raises(KeyFlowError, match="step rollover"):
        rollover(duo, fake, ZONE, "zsk")
    assert fake.pool == {"a": [], "b": []}
    assert {("a", "key-delete"), ("b", "key-delete"), ("backup", "bundle-remove")} <= set(fake.calls)


def test_a_rollover_started_on_one_node_keeps_the_successor_for_resume(duo: Duo) -> None:
    fake = Fake()
    fake.fail = {("b", "key-rollover")}
    with pytest.raises(KeyFlowError, match="--resume"):
        rollover(duo, fake, ZONE, "zsk")
    # a rolled: the successor must stay in b's pool and HSM, not be undone under a's feet.
    assert len(fake.pool["b"]) == 1
    assert ("b", "key-delete") not in fake.calls
    fake.fail = set()
    done = resume(duo, fake, ZONE, "zsk")
    assert list(done.started) == ["b"]
    assert fake.pool["b"] == []
    assert {k["locator"] for k in fake.zones["a"][ZONE]} == {k["locator"] for k in fake.zones["b"][ZONE]}


def test_keys_left_in_a_pool_are_refused_before_any_key_is_made(duo: Duo) -> None:
    fake = Fake()
    fake.pool["b"] = ["ee" * 16]
    with pytest.raises(KeyFlowError, match="node b's spare-key pool holds"):
        rollover(duo, fake, ZONE, "ksk")
    assert not any(op == "key-generate" for _, op in fake.calls)


def test_a_zone_without_a_key_of_the_role_would_take_the_successor_and_is_refused(duo: Duo) -> None:
    fake = Fake()
    fake.zones["b"]["new.test"] = []
    with pytest.raises(KeyFlowError, match=r"zone new\.test has no ZSK"):
        rollover(duo, fake, ZONE, "zsk")
    assert not any(op == "key-generate" for _, op in fake.calls)


def test_ds_seen_accepts_a_node_that_is_already_there(duo: Duo) -> None:
    fake = Fake()
    fake.zones["a"][ZONE][0]["flags"]["dsAtParent"] = 2  # submitted; b has it seen (3) already
    result = mark_ds(duo, fake, ZONE, 11, "seen")
    assert sorted(result["nodes"]) == ["a", "b"]


def test_ds_gone_for_a_key_whose_ds_is_not_on_its_way_out_is_refused(duo: Duo) -> None:
    fake = Fake()
    with pytest.raises(KeyFlowError, match=r"not ready to be marked gone on a \(dsAtParent 3\)"):
        mark_ds(duo, fake, ZONE, 11, "gone")
    assert not any(op == "key-ds" for _, op in fake.calls)
