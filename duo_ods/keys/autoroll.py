"""The rollover scheduler's I/O: read every node's key states, decide (duo_ods.keys.schedule), act.

One pass runs under the duo's key lock, so the watcher's scheduler, a `key schedule --once` timer and
a person's `key rollover` never both start a rollover: each decides from what it read under the lock.
A pass never waits long: a DS the parent does not serve yet is looked at again on the next pass
(the enforcer waits the DS TTL and propagation delay itself after ds-seen: nothing waits twice).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from dns.rdtypes.ANY.DS import DS

from duo_ods.config.durations import parse_duration
from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import DuoError
from duo_ods.keys.dnssec import make_dnskey, make_ds
from duo_ods.keys.flow import finish_pending
from duo_ods.keys.journal import KeyLockError, key_lock, state_dir
from duo_ods.keys.rollover import mark_ds_locked, resume_locked, rollover_locked
from duo_ods.keys.schedule import Action, NodeStates, Step, decide, timeline
from duo_ods.parent.agents import all_serve, ask_all, ds_key, none_serve
from duo_ods.parent.config import Parent, parent_for
from duo_ods.parent.ledger import Ledger, Submission, due
from duo_ods.parent.submit import SubmitAction, submit
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient

log = logging.getLogger(__name__)

WAIT_REPEAT = 60.0  # seconds between two log lines about the same wait
PASS_LOCK_WAIT = 10.0  # seconds a pass waits for another key command; busy longer: the next pass


@dataclass
class Outcome:
    action: Action
    done: bool  # the action happened (a rollover started, a DS marked); False: it waits
    message: str
    changed: bool = False  # keys changed (a backup snapshot is due)
    failed: bool = False  # an error (a node refused, a submit failed), not just a wait

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "action": self.action.to_json()}


def lifetimes(duo: Duo) -> dict[str, int]:
    policy = duo.config.policy
    return {
        "KSK": parse_duration(policy.ksk_lifetime),
        "ZSK": parse_duration(policy.zsk_lifetime),
        "CSK": parse_duration(policy.csk_lifetime),
    }


def read_states(duo: Duo, client: NodeClient) -> tuple[dict[str, NodeStates | str], dict[str, int]]:
    """node -> zone -> keys (or why the node did not answer); zone -> the enforcer's next change."""
    states: dict[str, NodeStates | str] = {}
    next_change: dict[str, int] = {}
    for node in duo.nodes:
        try:
            zones = client.call(node, P.KEY_STATES).zones
        except DuoError as exc:
            states[node] = str(exc).splitlines()[0][:300]
            continue
        states[node] = {z.zone: z.keys for z in zones}
        for z in zones:
            change = z.fields.get("nextChange", 0)
            if change > 0:
                next_change[z.zone] = min(next_change.get(z.zone, change), change)
    return states, next_change


def run_pass(duo: Duo, client: NodeClient, now: float | None = None) -> list[Outcome]:
    """One look at every zone, under the key lock; what was done and what waits (and why)."""
    try:
        with key_lock(duo, "key schedule", wait=PASS_LOCK_WAIT):
            return _run_pass_locked(duo, client, time.time() if now is None else now)
    except KeyLockError as exc:
        return [
            Outcome(Action("wait", "*", reason=str(exc)), False, f"busy: {exc}; the next pass tries again")
        ]


def _run_pass_locked(duo: Duo, client: NodeClient, now: float) -> list[Outcome]:
    outcomes: list[Outcome] = []
    try:
        finished = finish_pending(duo, client)
    except DuoError as exc:
        why = f"an unfinished key command waits: {exc}"
        return [Outcome(Action("wait", "*", reason=why), False, why)]
    if finished is not None:
        outcomes.append(Outcome(Action("resume", "*"), True, finished.message, changed=True))
    states, _next = read_states(duo, client)
    auto = duo.config.rollover.auto
    actions = decide(states, lifetimes(duo), now, lambda z: parent_for(duo, z) is not None, auto=auto)
    ledger = Ledger(state_dir(duo) / "parent.json")
    for action in actions:
        try:
            outcomes.append(_act(duo, client, action, ledger, now))
        except DuoError as exc:
            outcomes.append(
                Outcome(action, False, f"zone {action.zone}: {action.kind} failed: {exc}", failed=True)
            )
    return outcomes


def _act(duo: Duo, client: NodeClient, action: Action, ledger: Ledger, now: float) -> Outcome:
    if action.kind == "wait":
        return Outcome(action, False, f"zone {action.zone}: waits: {action.reason}")
    if action.kind == "roll":
        done = rollover_locked(duo, client, action.zone, action.role.lower())
        return Outcome(
            action, True,
            f"zone {action.zone}: {action.reason}: {done.role} rollover to key {done.keytag} started on "
            f"{', '.join(done.started)}, {done.spread:.2f} s apart", changed=True,
        )  # fmt: skip
    if action.kind == "resume":
        done = resume_locked(duo, client, action.zone, action.role)
        where = ", ".join(done.started)
        return Outcome(action, True, f"zone {action.zone}: {action.reason}: resumed on {where}", changed=True)
    parent = parent_for(duo, action.zone)
    assert parent is not None  # decide() asks for DS work only where a parent is configured
    return _ds_step(duo, client, action, parent, ledger=ledger, now=now)


def ds_of(duo: Duo, client: NodeClient, zone: str, locator: str) -> DS:
    """The SHA-256 DS of a KSK, from the first node whose HSM has it."""
    problems = []
    for node in duo.nodes:
        try:
            keys = client.call(node, P.KEY_LIST, P.KeyListRequest(zone=zone)).keys
            key = next(k for k in keys if k.locator == locator)
            public = client.call(node, P.KEY_PUBLIC, P.LocatorRequest(locator=locator)).public
        except (DuoError, StopIteration) as exc:
            problems.append(f"node {node}: {exc or 'no such key'}")
            continue
        if public is not None:
            return make_ds(zone, make_dnskey(key.role, key.algorithm, base64.b64decode(public)))
    raise DuoError(f"zone {zone}: no node has the public key {locator}: {'; '.join(problems)}")


def _ds_step(
    duo: Duo, client: NodeClient, action: Action, parent: Parent, *, ledger: Ledger, now: float
) -> Outcome:
    """Look at every agent first: what all of them serve already is marked (nothing is submitted
    twice); otherwise submit (once, a failure retried after [rollover] submit_retry) and look again
    on the next pass. Nothing is marked that one agent does not serve."""
    zone, tag = action.zone, action.keytag
    ds = ds_of(duo, client, zone, action.locator)
    change: SubmitAction = "add" if action.kind == "ds-seen" else "remove"
    wanted = ds_key(ds)
    views = ask_all(parent.agents, zone)
    verdict = all_serve(views, wanted) if change == "add" else none_serve(views, wanted)
    if verdict.ok:
        marked = mark_ds_locked(duo, client, zone, tag, "seen" if change == "add" else "gone")
        ledger.drop(zone, tag, change)
        where = "served by" if change == "add" else "gone from"
        return Outcome(
            action, True,
            f"zone {zone}: DS of KSK {tag} {where} every parental agent ({', '.join(sorted(views))}); "
            f"marked {marked['action']} on {', '.join(marked['nodes'])}, {marked['spread']:.2f} s apart",
            changed=True,
        )  # fmt: skip
    waiting = f"zone {zone}: KSK {tag} waits on the parent: {'; '.join(verdict.problems)}"
    entry = ledger.get(zone, tag, change)
    if not parent.can_submit or not due(entry, now, duo.config.rollover.submit_retry):
        failed = entry is not None and not entry.done
        if entry is not None and failed:
            waiting += f" (the DS {change} failed {entry.attempts} time(s), retried: {entry.error})"
        return Outcome(action, False, waiting, failed=failed)
    entry = entry or Submission(zone, tag, change)
    entry.attempts += 1
    entry.last_try = now
    try:
        told = submit(parent, change, tag, ds)
    except DuoError as exc:
        entry.error = str(exc)
        ledger.put(entry)
        retry = duo.config.rollover.submit_retry
        return Outcome(
            action, False,
            f"{waiting} (the DS {change} failed, attempt {entry.attempts}, retried in {retry:.0f} s: {exc})",
            failed=True,
        )  # fmt: skip
    entry.done, entry.error = True, ""
    ledger.put(entry)
    return Outcome(action, False, f"{waiting} (DS {change} submitted: {'; '.join(told)})")


class Scheduler:
    """The key origin's watcher runs one pass every [rollover] interval; waits are logged when they change."""

    def __init__(self, duo: Duo, client: NodeClient, enabled: bool) -> None:
        self.duo = duo
        self.client = client
        self.enabled = enabled
        self.interval = duo.config.rollover.interval
        self.next = time.monotonic()
        self.told: dict[tuple[str, str, str, int], tuple[str, float]] = {}  # wait -> (message, when told)

    def tick(self) -> bool:
        """True when keys changed (the watcher then snapshots for the backup)."""
        if not self.enabled or time.monotonic() < self.next:
            return False
        self.next = time.monotonic() + self.interval
        outcomes = run_pass(self.duo, self.client)
        now = time.monotonic()
        told: dict[tuple[str, str, str, int], tuple[str, float]] = {}
        for o in outcomes:
            if o.done:
                continue
            a = o.action
            key = (a.kind, a.zone, a.role, a.keytag)
            before = self.told.get(key)
            # A new wait is told at once; one that goes on, again when it says something new, at
            # most every WAIT_REPEAT seconds (a retried submit changes its attempt count each time).
            if before is None or (before[0] != o.message and now - before[1] >= WAIT_REPEAT):
                log.warning("rollover scheduler: %s", o.message)
                told[key] = (o.message, now)
            else:
                told[key] = before
        self.told = told
        for o in outcomes:
            if o.done:
                log.info("rollover scheduler: %s", o.message)
        return any(o.changed for o in outcomes)


def timeline_of(duo: Duo, client: NodeClient, zone: str | None = None) -> list[Step]:
    """`key timeline`: from the key origin's enforcer (the nodes agree within the skew margin)."""
    origin = duo.config.key_origin or next(iter(duo.nodes))
    request = P.KeyStatesRequest(zone=normalize_zone_name(zone) if zone else None)
    steps: list[Step] = []
    for z in client.call(origin, P.KEY_STATES, request).zones:
        change = z.fields.get("nextChange", 0)
        steps += timeline(
            z.zone, z.keys, change, lifetimes(duo), parent=parent_for(duo, z.zone) is not None,
            now=time.time(), auto=duo.config.rollover.auto,
        )  # fmt: skip
    return steps
