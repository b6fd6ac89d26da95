"""When a bundle may leave the backup store."""

from __future__ import annotations

from duo_ods.backup.retention import plan_prune
from duo_ods.keys.bundle import KeyBundle

DAY = 86400.0


def bundle(locator: str, zone: str = "z.test") -> KeyBundle:
    return KeyBundle(zone=zone, role="ZSK", algorithm=13, bits=256, locator=locator, inception=0, origin="a",
                     public="", wrapped="", kek="", keytag=1)  # fmt: skip


ZONES = {"a": {"z.test"}, "b": {"z.test"}}


def test_a_key_dead_on_every_node_starts_its_clock_and_goes_after_the_retention() -> None:
    keys = {"a": {"k1": True}, "b": {"k1": True}}
    first = plan_prune([bundle("k1")], keys, ZONES, {}, now=100 * DAY, retention=90 * DAY)
    assert first.ledger == {"k1": 100 * DAY}
    assert first.remove == []
    later = plan_prune([bundle("k1")], keys, ZONES, first.ledger, now=191 * DAY, retention=90 * DAY)
    assert later.remove == ["k1"]


def test_a_key_alive_on_one_node_stays_and_its_clock_starts_over() -> None:
    keys = {"a": {"k1": True}, "b": {"k1": False}}
    plan = plan_prune([bundle("k1")], keys, ZONES, {"k1": 0.0}, now=365 * DAY, retention=90 * DAY)
    assert plan.remove == []
    assert plan.ledger == {}


def test_a_key_of_a_zone_gone_from_every_node_is_dead() -> None:
    plan = plan_prune([bundle("k1", "old.test")], {"a": {}, "b": {}}, ZONES, {}, now=1.0, retention=0.0)
    assert plan.ledger == {"k1": 1.0}


def test_a_key_missing_from_a_node_that_still_has_its_zone_is_not_dead() -> None:
    # e.g. key create between its backup and import steps
    plan = plan_prune([bundle("k1")], {"a": {}, "b": {}}, ZONES, {}, now=1.0, retention=0.0)
    assert plan.ledger == {}


def test_a_wiped_node_decides_nothing() -> None:
    plan = plan_prune([bundle("k1")], {"a": {}, "b": {}}, {"a": {"z.test"}, "b": set()}, {"k1": 0.0},
                      now=365 * DAY, retention=0.0)  # fmt: skip
    assert plan.remove == []
    assert plan.undecided is not None and "b" in plan.undecided
    assert plan.ledger == {"k1": 0.0}
