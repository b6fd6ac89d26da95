"""The rollover scheduler's decisions (pure, a fake clock) and one pass over fake nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.keys.autoroll import run_pass
from duo_ods.keys.schedule import Action, decide, timeline
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.unit.keys.test_rollover import Fake

ZONE = "example.test"
DAY = 86400
LIFETIMES = {"KSK": 365 * DAY, "ZSK": 90 * DAY, "CSK": 365 * DAY}
ALL_IN = {"ds": "omnipresent", "dnskey": "omnipresent", "rrsigdnskey": "omnipresent", "rrsig": "omnipresent"}


def key(
    locator: str, role: str, *, inception: int = 0, ds: int = 3, tag: int = 1,
    states: dict[str, str] | None = None, introducing: int = 1,
) -> P.KeyStateMsg:  # fmt: skip
    records = [
        P.RecordStateMsg(type=t, state=s, last_change=0, minimize=0, ttl=300)
        for t, s in (states or ALL_IN).items()
    ]
    return P.KeyStateMsg(
        zone=ZONE, locator=locator, role=role, algorithm=13, inception=inception, keytag=tag,
        flags={"dsAtParent": ds, "introducing": introducing},
        records=records,
    )  # fmt: skip


KSK = key("a1" * 16, "KSK", tag=11)
ZSK = key("b1" * 16, "ZSK", tag=22)


def both(*keys: P.KeyStateMsg) -> dict[str, dict[str, list[P.KeyStateMsg]] | str]:
    return {n: {ZONE: list(keys)} for n in "ab"}


def no_parent(zone: str) -> bool:
    return False


def test_nothing_is_due_before_the_lifetime() -> None:
    assert decide(both(KSK, ZSK), LIFETIMES, 90 * DAY - 1, no_parent) == []


def test_a_zsk_past_its_lifetime_rolls_and_a_ksk_in_its_lifetime_does_not() -> None:
    actions = decide(both(KSK, ZSK), LIFETIMES, 90 * DAY, no_parent)
    assert actions == [Action("roll", ZONE, "ZSK", 22, ZSK.locator, reason="ZSK 22 is past its lifetime")]


def test_both_roles_past_their_lifetimes_both_roll() -> None:
    kinds = [(a.kind, a.role) for a in decide(both(KSK, ZSK), LIFETIMES, 365 * DAY, no_parent)]
    assert kinds == [("roll", "KSK"), ("roll", "ZSK")]


def test_a_node_down_makes_every_rollover_wait_and_says_which() -> None:
    states = both(KSK, ZSK)
    states["b"] = "node b: connection refused"
    [action] = decide(states, LIFETIMES, 400 * DAY, no_parent)
    assert action.kind == "wait" and "node b does not answer" in action.reason


def test_a_rollover_under_way_starts_no_second() -> None:
    successor = key(
        "b2" * 16, "ZSK", inception=90 * DAY, tag=23, states={"dnskey": "rumoured", "rrsig": "hidden"}
    )
    assert decide(both(KSK, ZSK, successor), LIFETIMES, 200 * DAY, no_parent) == []


def test_a_dead_predecessor_does_not_count() -> None:
    dead = key("b0" * 16, "ZSK", introducing=0, states={"dnskey": "hidden", "rrsig": "hidden"})
    kinds = [a.kind for a in decide(both(KSK, ZSK, dead), LIFETIMES, 90 * DAY, no_parent)]
    assert kinds == ["roll"]


def test_a_key_still_coming_in_is_not_rolled() -> None:
    coming = key("b1" * 16, "ZSK", tag=22, states={"dnskey": "omnipresent", "rrsig": "rumoured"})
    [action] = decide(both(KSK, coming), LIFETIMES, 100 * DAY, no_parent)
    assert action.kind == "wait" and "not fully in use" in action.reason


def test_a_successor_on_one_node_only_is_resumed_not_rolled_again() -> None:
    successor = key("b2" * 16, "ZSK", inception=90 * DAY, tag=23)
    states: dict[str, dict[str, list[P.KeyStateMsg]] | str] = {
        "a": {ZONE: [KSK, ZSK, successor]}, "b": {ZONE: [KSK, ZSK]},
    }  # fmt: skip
    [action] = decide(states, LIFETIMES, 200 * DAY, no_parent)
    assert (action.kind, action.role, action.locator) == ("resume", "ZSK", successor.locator)
    assert "not on b" in action.reason


def test_a_zone_missing_on_a_node_waits() -> None:
    states: dict[str, dict[str, list[P.KeyStateMsg]] | str] = {"a": {ZONE: [KSK, ZSK]}, "b": {}}
    [action] = decide(states, LIFETIMES, 200 * DAY, no_parent)
    assert action.kind == "wait" and "not on node b" in action.reason


def test_ds_to_submit_goes_to_the_parent_when_there_is_one_else_waits_on_a_person() -> None:
    new = key("a2" * 16, "KSK", ds=1, tag=12, states={"ds": "hidden", "dnskey": "omnipresent"})
    [action] = decide(both(KSK, ZSK, new), LIFETIMES, 1, lambda z: True)
    assert (action.kind, action.keytag) == ("ds-seen", 12)
    [waiting] = decide(both(KSK, ZSK, new), LIFETIMES, 1, no_parent)
    assert waiting.kind == "wait" and "key ds-seen example.test --keytag 12" in waiting.reason


def test_a_node_told_already_does_not_stop_ds_seen_for_the_other() -> None:
    new_a = key("a2" * 16, "KSK", ds=3, tag=12)
    new_b = key("a2" * 16, "KSK", ds=2, tag=12)
    states: dict[str, dict[str, list[P.KeyStateMsg]] | str] = {
        "a": {ZONE: [KSK, ZSK, new_a]}, "b": {ZONE: [KSK, ZSK, new_b]},
    }  # fmt: skip
    assert [a.kind for a in decide(states, LIFETIMES, 1, lambda z: True)] == ["ds-seen"]


@pytest.mark.parametrize("flag", [4, 5])
def test_old_ds_to_retract_or_retracted_is_withdrawn(flag: int) -> None:
    old = key("a0" * 16, "KSK", ds=flag, tag=10, introducing=0)
    [action] = decide(both(KSK, ZSK, old), LIFETIMES, 1, lambda z: True)
    assert (action.kind, action.keytag) == ("ds-gone", 10)


def test_the_old_ds_stays_until_the_new_one_is_seen() -> None:
    new = key("a2" * 16, "KSK", ds=2, tag=12)
    old = key("a1" * 16, "KSK", ds=5, tag=11, introducing=0)
    actions = decide(both(old, ZSK, new), LIFETIMES, 1, lambda z: True)
    assert [(a.kind, a.keytag) for a in actions] == [("ds-seen", 12), ("wait", 11)]
    assert "until that of KSK 12 is seen" in actions[1].reason
    seen = key("a2" * 16, "KSK", ds=3, tag=12)
    assert [(a.kind, a.keytag) for a in decide(both(old, ZSK, seen), LIFETIMES, 1, lambda z: True)] == [
        ("ds-gone", 11)
    ]


def test_a_ksk_never_submitted_is_not_withdrawn() -> None:
    unsubmitted = key("a2" * 16, "KSK", ds=0, tag=12)
    assert decide(both(KSK, ZSK, unsubmitted), LIFETIMES, 1, lambda z: True) == []


def test_auto_off_keeps_the_parent_work_but_starts_no_rollover() -> None:
    new = key("a2" * 16, "KSK", ds=1, tag=12)
    kinds = [a.kind for a in decide(both(KSK, ZSK, new), LIFETIMES, 400 * DAY, lambda z: True, auto=False)]
    assert kinds == ["ds-seen"]


def test_timeline_names_the_next_rollover_and_the_parent() -> None:
    new = key("a2" * 16, "KSK", ds=1, tag=12, inception=5)
    steps = {s.keytag: s for s in timeline(ZONE, [KSK, ZSK, new], 1000, LIFETIMES, parent=True, now=5)}
    assert (steps[22].next, steps[22].at, steps[22].waits_on) == ("ZSK rollover", 90.0 * DAY, "time")
    assert (steps[12].waits_on, steps[12].at) == ("parent", None)
    assert steps[11].waits_on == "ttl" and steps[11].at == 1000.0  # two KSKs: a rollover under way
    assert {s.keytag: s.waits_on for s in timeline(ZONE, [new], 0, LIFETIMES, parent=False, now=5)} == {
        12: "person"
    }
    overdue = timeline(ZONE, [KSK, ZSK], 0, LIFETIMES, parent=True, now=100 * DAY)
    assert {s.keytag: s.at for s in overdue} == {11: 365.0 * DAY, 22: 100.0 * DAY}, "an overdue rollover: now"


# --- one pass over fake nodes ------------------------------------------------------------------


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES + '\n[policy]\nzsk_lifetime = "PT60S"\n')
    return load_config(tmp_path / "duo.toml")


def past_lifetime(fake: Fake) -> None:
    for node in "ab":
        fake.zones[node][ZONE] = [KSK, ZSK]


def test_a_pass_rolls_a_zsk_past_its_lifetime_on_every_node(duo: Duo) -> None:
    fake = Fake()
    past_lifetime(fake)
    outcomes = run_pass(duo, fake.client, now=61)
    assert [o.action.kind for o in outcomes if o.done] == ["roll"]
    for node in "ab":
        assert len([k for k in fake.zones[node][ZONE] if k.role == "ZSK"]) == 2
    # the next pass sees the rollover under way and starts no second one
    assert not [o for o in run_pass(duo, fake.client, now=62) if o.done]


def test_a_pass_with_a_node_down_changes_nothing_and_says_so(duo: Duo) -> None:
    fake = Fake()
    past_lifetime(fake)
    fake.fail.add(("b", P.KEY_STATES))
    [outcome] = run_pass(duo, fake.client, now=61)
    assert not outcome.done and "node b does not answer" in outcome.message
    assert P.KEY_POOL_ADD not in fake.ops_called() and P.KEY_ROLLOVER not in fake.ops_called()


def test_an_enforcer_lagging_on_a_dead_key_holds_new_rollovers_without_a_resume() -> None:
    dead = key("b0" * 16, "ZSK", introducing=0, states={"dnskey": "hidden", "rrsig": "hidden"})
    going = key("b0" * 16, "ZSK", introducing=0, states={"dnskey": "unretentive", "rrsig": "hidden"})
    states: dict[str, dict[str, list[P.KeyStateMsg]] | str] = {
        "a": {ZONE: [KSK, ZSK, dead]}, "b": {ZONE: [KSK, ZSK, going]},
    }  # fmt: skip
    [action] = decide(states, LIFETIMES, 200 * DAY, no_parent)
    assert action.kind == "wait" and "differ" in action.reason


def test_the_watcher_tells_a_wait_once_and_again_only_when_it_changes_after_a_while(
    duo: Duo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from duo_ods.keys import autoroll  # noqa: PLC0415

    wait = Action("ds-seen", ZONE, "KSK", 12)
    messages = iter(["waits: attempt 1", "waits: attempt 2", "waits: attempt 2", "waits: attempt 3"])
    monkeypatch.setattr(autoroll, "run_pass", lambda d, c: [autoroll.Outcome(wait, False, next(messages))])
    now = [0.0]
    monkeypatch.setattr(autoroll.time, "monotonic", lambda: now[0])
    scheduler = autoroll.Scheduler(duo, Fake().client, enabled=True)
    scheduler.interval = 0
    with caplog.at_level("WARNING"):
        for at in (0.0, 10.0, 100.0):
            now[0] = at
            scheduler.tick()
    # attempt 2 at 10 s is not told (the same wait, told 10 s ago); at 100 s it is
    assert [r.getMessage() for r in caplog.records] == [
        "rollover scheduler: waits: attempt 1",
        "rollover scheduler: waits: attempt 2",
    ]
