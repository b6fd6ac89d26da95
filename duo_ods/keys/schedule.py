"""What the rollover scheduler should do, decided from facts alone (pure, unit tested with a fake clock).

Facts in: every node's key states (or why a node did not answer), the policy's lifetimes, which
zones have a parent configured, and the time. Actions out: start a rollover, finish one that some
nodes only started, publish or withdraw a DS at the parent, or wait (and why). duo_ods.keys.autoroll
does the I/O.

The duo sets ManualRollover on every key (two enforcers must not each make their own successor), so
this is what rolls keys on their lifetimes, once for every enforcer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from duo_ods.protocol.ops import KeyStateMsg

ActionKind = Literal["roll", "resume", "ds-seen", "ds-gone", "wait"]
ROLES = ("KSK", "ZSK")

# dsAtParent (ODS 2.1.12 keyData): unsubmitted 0, submit 1, submitted 2, seen 3, retract 4, retracted 5.
DS_TO_SEE = {1, 2}
DS_SEEN = 3
DS_TO_GO = {4, 5}

NodeStates = Mapping[str, Sequence[KeyStateMsg]]  # zone -> its keys, as one node's enforcer has them


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    zone: str
    role: str = ""
    keytag: int = 0
    locator: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def records(key: KeyStateMsg) -> dict[str, str]:
    return {r.type: r.state for r in key.records}


def in_use(key: KeyStateMsg) -> bool:
    """Fully introduced: a ZSK signs everywhere, a KSK's DS is everywhere. Only such a key is rolled
    on its lifetime (a key still coming in is not rolled before it is there)."""
    rec = records(key)
    if key.role == "ZSK":
        return rec.get("dnskey") == "omnipresent" and rec.get("rrsig") == "omnipresent"
    return rec.get("ds") == "omnipresent" and rec.get("dnskey") == "omnipresent"


def live(keys: Sequence[KeyStateMsg], role: str) -> list[KeyStateMsg]:
    return sorted((k for k in keys if k.role == role and not k.dead), key=lambda k: k.inception)


def due_at(key: KeyStateMsg, lifetimes: Mapping[str, int]) -> int | None:
    lifetime = lifetimes.get(key.role)
    return key.inception + lifetime if lifetime else None


def decide(
    states: Mapping[str, NodeStates | str],
    lifetimes: Mapping[str, int],
    now: float,
    has_parent: Callable[[str], bool],
    auto: bool = True,
) -> list[Action]:
    """states: node -> its zones' keys, or a one-line reason it did not answer.

    A rollover never proceeds on a subset of the nodes: one node down makes every zone wait.
    """
    down = {n: s for n, s in states.items() if isinstance(s, str)}
    if down:
        why = "; ".join(f"node {n} does not answer ({s})" for n, s in sorted(down.items()))
        return [Action("wait", "*", reason=f"rollovers wait for every node: {why}")]
    views: dict[str, NodeStates] = {n: s for n, s in states.items() if not isinstance(s, str)}
    zones = sorted({z for s in views.values() for z in s})
    actions: list[Action] = []
    for zone in zones:
        actions += _decide_zone(zone, views, lifetimes, now=now, parent=has_parent(zone), auto=auto)
    return actions


def _decide_zone(
    zone: str, views: Mapping[str, NodeStates], lifetimes: Mapping[str, int], *, now: float, parent: bool,
    auto: bool,
) -> list[Action]:  # fmt: skip
    missing = sorted(n for n, s in views.items() if zone not in s)
    if missing:
        return [Action("wait", zone, reason=f"zone is not on node {', '.join(missing)} (yet)")]
    per_node = {n: list(s[zone]) for n, s in views.items()}
    actions: list[Action] = []
    for role in ROLES:
        locators = {n: {k.locator for k in keys if k.role == role} for n, keys in per_node.items()}
        everywhere = set.intersection(*locators.values())
        somewhere = set.union(*locators.values())
        if somewhere != everywhere:
            # A successor some enforcers took and others still hold in their pool (a rollover that
            # stopped at a node): finished forward, never a second one started.
            for locator in sorted(somewhere - everywhere):
                lacking = sorted(n for n, locs in locators.items() if locator not in locs)
                actions.append(Action(
                    "resume", zone, role, locator=locator,
                    reason=f"{role} {locator} is on some nodes only (not on {', '.join(lacking)})",
                ))  # fmt: skip
            continue
        if len({frozenset(k.locator for k in live(keys, role)) for keys in per_node.values()}) > 1:
            # One enforcer lags (it was down, or runs a few seconds behind): no new rollover until
            # they agree on which keys are live.
            actions.append(
                Action("wait", zone, role, reason=f"the nodes' enforcers differ on the live {role}s")
            )
            continue
        first = next(iter(per_node.values()))
        keys = live(first, role)
        if role == "KSK":
            actions += _ds_actions(zone, per_node, parent)
        if not auto or len(keys) != 1:
            continue  # no key yet (key create's job), or a rollover under way: one at a time
        [key] = keys
        due = due_at(key, lifetimes)
        if due is None or now < due:
            continue
        if not all(in_use(k) for ks in per_node.values() for k in ks if k.locator == key.locator):
            actions.append(Action(
                "wait", zone, role, key.keytag, key.locator,
                reason=f"{role} {key.keytag} is past its lifetime but not fully in use yet",
            ))  # fmt: skip
            continue
        actions.append(Action(
            "roll", zone, role, key.keytag, key.locator, reason=f"{role} {key.keytag} is past its lifetime"
        ))  # fmt: skip
    return actions


def _ds_actions(zone: str, per_node: Mapping[str, Sequence[KeyStateMsg]], parent: bool) -> list[Action]:
    """A KSK whose DS every enforcer waits for at the parent (or for the parent to drop)."""
    actions: list[Action] = []
    locators = {k.locator for ks in per_node.values() for k in ks if k.role == "KSK"}
    pending: list[tuple[ActionKind, KeyStateMsg]] = []
    for locator in sorted(locators):
        flags = [k.flags["dsAtParent"] for ks in per_node.values() for k in ks if k.locator == locator]
        if len(flags) != len(per_node):
            continue
        sample = next(k for ks in per_node.values() for k in ks if k.locator == locator)
        if all(f in DS_TO_SEE | {DS_SEEN} for f in flags) and any(f in DS_TO_SEE for f in flags):
            kind: ActionKind = "ds-seen"
        elif all(f in DS_TO_GO | {0} for f in flags) and any(f in DS_TO_GO for f in flags):
            # The enforcer moves retract (4) on to retracted (5) by itself; either waits for ds-gone,
            # and 0 is a node told already (ds-gone ends at unsubmitted).
            kind = "ds-gone"
        else:
            continue
        pending.append((kind, sample))
    # ds-seen first: ODS asks for the old DS to go as soon as the new one is submitted, but a parent
    # without either would make the zone insecure. The old DS leaves once the new one is seen.
    incoming = [k.keytag for kind, k in pending if kind == "ds-seen"]
    for kind, sample in sorted(pending, key=lambda p: p[0] != "ds-seen"):
        locator = sample.locator
        if parent and kind == "ds-gone" and incoming:
            tags = ", ".join(str(t) for t in incoming)
            actions.append(Action(
                "wait", zone, "KSK", sample.keytag, locator,
                reason=f"the DS of KSK {sample.keytag} stays at the parent until that of KSK {tags} "
                "is seen there",
            ))  # fmt: skip
        elif parent:
            actions.append(Action(kind, zone, "KSK", sample.keytag, locator))
        else:
            what = "published at" if kind == "ds-seen" else "withdrawn from"
            actions.append(Action(
                "wait", zone, "KSK", sample.keytag, locator,
                reason=f"the DS of KSK {sample.keytag} is to be {what} the parent by a person "
                f"(no [parents] entry), then `ods-duo key {kind} {zone} --keytag {sample.keytag}`",
            ))  # fmt: skip
    return actions


# --- the timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    zone: str
    role: str
    keytag: int
    locator: str
    state: str  # records in short: "ds omnipresent, dnskey omnipresent, ..."
    next: str  # the next transition
    at: float | None  # when (epoch seconds), None when it waits on something without a clock
    waits_on: Literal["time", "ttl", "parent", "person", "nodes", "nothing"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def timeline(
    zone: str,
    keys: Sequence[KeyStateMsg],
    next_change: int | None,
    lifetimes: Mapping[str, int],
    *,
    parent: bool,
    now: float,
    auto: bool = True,
) -> list[Step]:
    """For every live key of one node's zone: its next step, when, and what it waits on."""
    steps: list[Step] = []
    for role in ROLES:
        role_keys = live(keys, role)
        for key in role_keys:
            rec = records(key)
            state = ", ".join(f"{t} {s}" for t, s in rec.items())
            ds = key.flags.get("dsAtParent", 0)
            if role == "KSK" and ds in DS_TO_SEE | DS_TO_GO:
                what = "DS seen at the parent" if ds in DS_TO_SEE else "DS gone from the parent"
                steps.append(Step(zone, role, key.keytag, key.locator, state, what, None,
                                  "parent" if parent else "person"))  # fmt: skip
                continue
            due = due_at(key, lifetimes)
            if auto and len(role_keys) == 1 and due is not None and in_use(key):
                # The scheduler looks every [rollover] interval: the rollover starts by then (an
                # overdue one, a key that came into use after its lifetime: now).
                steps.append(Step(zone, role, key.keytag, key.locator, state, f"{role} rollover",
                                  float(max(due, now)), "time"))  # fmt: skip
                continue
            if next_change and next_change > 0:
                what = "the enforcer moves its records on"
                steps.append(
                    Step(zone, role, key.keytag, key.locator, state, what, float(next_change), "ttl")
                )
            else:
                steps.append(Step(zone, role, key.keytag, key.locator, state, "none", None, "nothing"))
    return steps
