"""Enforcer state drift between nodes, from their key states."""

from __future__ import annotations

from typing import Any

from duo_ods.keys.drift import state_drift


def key(
    locator: str, states: dict[str, str], changed: int = 1000, ds: int = 0, tag: int = 1
) -> dict[str, Any]:
    return {
        "locator": locator, "role": "ZSK", "keytag": tag, "flags": {"dsAtParent": ds},
        "records": [{"type": t, "state": s, "last_change": changed} for t, s in states.items()],
    }  # fmt: skip


PUBLISHED = {"dnskey": "omnipresent", "rrsig": "rumoured"}


def test_same_states_within_the_margin_is_no_drift() -> None:
    assert state_drift({"a": [key("k1", PUBLISHED, 1000)], "b": [key("k1", PUBLISHED, 1020)]}, 30) == []


def test_a_record_state_that_differs_names_both_nodes() -> None:
    [found] = state_drift(
        {"a": [key("k1", PUBLISHED)], "b": [key("k1", {**PUBLISHED, "rrsig": "hidden"})]}, 30
    )
    assert found == "ZSK 1: rrsig rumoured on a, hidden on b"


def test_a_key_one_enforcer_lacks() -> None:
    assert state_drift(
        {"a": [key("k1", PUBLISHED), key("k2", PUBLISHED, tag=2)], "b": [key("k1", PUBLISHED)]}, 30
    ) == ["ZSK 2: not in the enforcer of b"]


def test_ds_at_parent_differs() -> None:
    [found] = state_drift({"a": [key("k1", PUBLISHED, ds=2)], "b": [key("k1", PUBLISHED, ds=3)]}, 30)
    assert "dsAtParent 2 on a, 3 on b" in found


def test_a_lagging_enforcer_is_reported_with_its_lag() -> None:
    [found] = state_drift({"a": [key("k1", PUBLISHED, 1000)], "b": [key("k1", PUBLISHED, 1400)]}, 30)
    assert "changed on b 400 s after a" in found
    assert "30 s margin" in found
