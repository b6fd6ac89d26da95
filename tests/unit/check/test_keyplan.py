"""`check`'s key plan warnings that need no network: a key left past its lifetime."""

from __future__ import annotations

from typing import Any

from duo_ods.check.keyplan import past_lifetime

LIFETIMES = {"KSK": 1000, "ZSK": 100, "CSK": 1000}


def key(role: str, inception: int, tag: int, introducing: int = 1) -> dict[str, Any]:
    state = "omnipresent" if introducing else "hidden"
    return {
        "role": role, "inception": inception, "keytag": tag, "flags": {"introducing": introducing},
        "records": [{"type": "dnskey", "state": state}],
    }  # fmt: skip


def test_a_lone_key_past_its_lifetime_and_the_grace_is_reported() -> None:
    keys = [key("KSK", 0, 1), key("ZSK", 0, 2)]
    assert past_lifetime(keys, LIFETIMES, now=110, grace=20) == []
    [message] = past_lifetime(keys, LIFETIMES, now=121, grace=20)
    assert message.startswith("ZSK 2 is ") and "past its lifetime" in message


def test_a_rollover_under_way_or_a_dead_key_is_not_reported() -> None:
    rolling = [key("ZSK", 0, 2), key("ZSK", 150, 3)]
    assert past_lifetime(rolling, LIFETIMES, now=200, grace=20) == []
    dead_and_new = [key("ZSK", 0, 2, introducing=0), key("ZSK", 150, 3)]
    assert past_lifetime(dead_and_new, LIFETIMES, now=200, grace=20) == []
    assert past_lifetime(dead_and_new, LIFETIMES, now=271, grace=20) != []
