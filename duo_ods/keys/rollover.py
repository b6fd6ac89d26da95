"""`key rollover` and `key ds-seen`/`ds-gone`: every enforcer moves its keys in step.

A rollover's successor is made and shared exactly like `key create` (invariant 1: every HSM
and the backup hold it before any enforcer sees it), then put into each enforcer's spare-key
pool, from which `ods-enforcer key rollover` takes it. The pool is per policy, so the
successor must be the only key waiting there: rollovers are serialised by a lock, and a pool
that already holds keys is refused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import DuoError
from duo_ods.keys.flow import (
    KeyFlowError,
    call_only,
    confirm_rolled,
    fan_out,
    finish_pending,
    pick_origin,
    roll_forward,
    share_keys,
    step,
    undo_made,
)
from duo_ods.keys.journal import Journal, Recorder, journal_path, key_lock
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient, PartlyDone

log = logging.getLogger(__name__)

ROLLOVER_ROLES = ("zsk", "ksk")


@dataclass
class Rollover:
    zone: str
    role: str
    locator: str
    keytag: int
    origin: str
    started: dict[str, float] = field(default_factory=dict)  # node -> when its enforcer was told

    @property
    def spread(self) -> float:
        """Seconds between the first and the last node starting the rollover."""
        return max(self.started.values()) - min(self.started.values()) if self.started else 0.0


def _states(duo: Duo, client: NodeClient) -> dict[str, dict[str, list[P.KeyStateMsg]]]:
    """node -> zone -> its keys with their enforcer states (from each node's database)."""
    return {
        node: {z.zone: z.keys for z in step("preflight", node, client, P.KEY_STATES).zones}
        for node in duo.nodes
    }


def _zone_keys(duo: Duo, client: NodeClient, zone: str) -> dict[str, list[P.KeyStateMsg]]:
    """node -> the zone's keys with their enforcer states."""
    keys: dict[str, list[P.KeyStateMsg]] = {}
    for node in duo.nodes:
        found = step("preflight", node, client, P.KEY_STATES, P.KeyStatesRequest(zone=zone)).keys_of(zone)
        if found is None:
            raise KeyFlowError(f"step preflight: zone {zone} is not on node {node}")
        keys[node] = found
    return keys


def _check_pool_is_ours(duo: Duo, client: NodeClient, zone: str, role: str) -> None:
    """The successor must be the only key the enforcers can take from their pools.

    The pool is per policy, and a zone without a key of this role takes any pool key the
    next time its enforcer runs (every 60 s with <ManualKeyGeneration/>): such zones, and keys
    already waiting in a pool, make the rollover refuse.
    """
    for node in duo.nodes:
        pool = step("preflight", node, client, P.DB_SCHEMA).pool
        if pool:
            raise KeyFlowError(
                f"step preflight: node {node}'s spare-key pool holds {', '.join(pool)}: the rollover could "
                f"take one of those instead of the shared successor (an unfinished rollover? see --resume)"
            )
    for node, zones in _states(duo, client).items():
        if zone not in zones:
            raise KeyFlowError(f"step preflight: zone {zone} is not on node {node}")
        keyless = sorted(
            z for z, keys in zones.items() if not any(k.role == role and not k.dead for k in keys)
        )
        if keyless:
            raise KeyFlowError(
                f"step preflight: on node {node}, zone {', '.join(keyless[:5])} has no {role}: its enforcer "
                "would take the shared successor from the pool; key create those zones first"
            )


def rollover(duo: Duo, client: NodeClient, zone: str, role: str, origin: str | None = None) -> Rollover:
    zone = normalize_zone_name(zone)
    if role not in ROLLOVER_ROLES:
        raise KeyFlowError(f"--role {role}: choose one of {', '.join(ROLLOVER_ROLES)}")
    with key_lock(duo, f"key rollover {zone}"):
        return rollover_locked(duo, client, zone, role, origin)


def rollover_locked(
    duo: Duo, client: NodeClient, zone: str, role: str, origin: str | None = None
) -> Rollover:
    """The rollover, for a caller that holds the key lock already (the scheduler decides under it)."""
    enforcer_role = role.upper()
    origin = pick_origin(duo, origin)
    finish_pending(duo, client)
    _check_pool_is_ours(duo, client, zone, enforcer_role)
    inception = int(time.time())
    journal = Recorder(journal_path(duo), Journal("key rollover", zone, time.time()))
    try:
        [bundle] = share_keys(
            duo, client, zone=zone, enforcer_roles=[enforcer_role], origin=origin,
            inception=inception, journal=journal,
        )  # fmt: skip
        pooled = P.KeyPoolAddRequest(
            locator=bundle.locator, role=enforcer_role, algorithm=bundle.algorithm, bits=bundle.bits,
            inception=inception,
        )  # fmt: skip
        for node in duo.nodes:
            journal.will_make("pool", node, bundle.locator)
        # Every node's pool at once (N nodes: one round trip, not N).
        fan_out({
            ("pool", node): partial(call_only, client, node, P.KEY_POOL_ADD, pooled) for node in duo.nodes
        })  # fmt: skip
    except DuoError as exc:
        _undo_or_keep(client, journal, exc)
        raise
    result = Rollover(zone, enforcer_role, bundle.locator, bundle.keytag, origin)
    # The commit point: from here a killed run is finished forward (every node rolls to the
    # successor that waits in its pool), never undone under an enforcer that took it.
    journal.commit(role=enforcer_role, locator=bundle.locator)
    try:
        started = client.on_each(
            duo.nodes, "rollover", P.KEY_ROLLOVER, P.KeyRolloverRequest(zone=zone, role=enforcer_role)
        )
    except PartlyDone as exc:
        # Never undone from here: a node whose reply was lost may have started it. The journal
        # stays, and `key resume` (or the next key command) rolls in the successor wherever a
        # pool still holds it.
        raise KeyFlowError(
            f"{exc}. The successor {bundle.locator} waits in the pool of {', '.join(exc.failed)}: "
            "`ods-duo key resume` (or the next key command) rolls it in there once they answer"
        ) from exc
    result.started = {node: reply.at for node, reply in started.items()}
    journal.close()
    confirm_rolled(client, zone, bundle.locator, list(duo.nodes))
    log.info(
        "zone %s: %s rollover to key %s (tag %d) started on %s, %.2f s apart",
        zone, enforcer_role, bundle.locator, bundle.keytag, ", ".join(result.started), result.spread,
    )  # fmt: skip
    return result


def _undo_or_keep(client: NodeClient, journal: Recorder, cause: DuoError) -> None:
    """Undo what the journal says this run made; what cannot be undone now stays journalled."""
    problems = undo_made(client, journal.journal.made)
    if problems:
        raise KeyFlowError(f"{cause}; not all of it could be undone yet ({'; '.join(problems)})") from cause
    journal.close()


def resume(duo: Duo, client: NodeClient, zone: str, role: str) -> Rollover:
    """Finish a rollover that started on some nodes only: the successor that one node's zone has
    and another node's pool still holds is rolled in there. (The journal finishes one that this
    version started; this also finds one that a run without a journal left.)"""
    zone = normalize_zone_name(zone)
    with key_lock(duo, f"key rollover {zone} --resume"):
        return resume_locked(duo, client, zone, role)


def resume_locked(duo: Duo, client: NodeClient, zone: str, role: str) -> Rollover:
    """`resume`, for a caller that holds the key lock already."""
    enforcer_role = role.upper()
    finished = finish_pending(duo, client)
    if finished and finished.journal.command == "key rollover" and finished.journal.zone == zone:
        locator = finished.journal.details["locator"]
        keys = _zone_keys(duo, client, zone)
        tag = next((k.keytag for ks in keys.values() for k in ks if k.locator == locator), 0)
        result = Rollover(zone, enforcer_role, locator, tag, origin="")
        result.started = dict.fromkeys(finished.nodes, time.time())
        confirm_rolled(client, zone, locator, list(duo.nodes))
        return result
    pools = {n: set(step("preflight", n, client, P.DB_SCHEMA).pool) for n in duo.nodes}
    keys = _zone_keys(duo, client, zone)
    taken = {k.locator: k for ks in keys.values() for k in ks if k.role == enforcer_role}
    waiting = {loc for pool in pools.values() for loc in pool if loc in taken}
    if len(waiting) != 1:
        raise KeyFlowError(f"zone {zone}: no unfinished {enforcer_role} rollover to resume")
    [locator] = waiting
    result = Rollover(zone, enforcer_role, locator, taken[locator].keytag, origin="")
    nodes = roll_forward(duo, client, zone, enforcer_role, locator)
    result.started = dict.fromkeys(nodes, time.time())
    confirm_rolled(client, zone, locator, nodes)
    log.info("zone %s: %s rollover to %s resumed on %s", zone, enforcer_role, locator, ", ".join(nodes))
    return result


# dsAtParent values on the way to each target (op_key_ds runs what each node still needs)
DS_PATH = {"seen": {1, 2, 3}, "gone": {4, 5, 0}}


def mark_ds(duo: Duo, client: NodeClient, zone: str, keytag: int, action: str) -> dict[str, Any]:
    """`key ds-seen` / `ds-gone`: the parent's DS for a KSK appeared or went, told to every node at once."""
    zone = normalize_zone_name(zone)
    with key_lock(duo, f"key ds-{action} {zone}"):
        return mark_ds_locked(duo, client, zone, keytag, action)


def mark_ds_locked(duo: Duo, client: NodeClient, zone: str, keytag: int, action: str) -> dict[str, Any]:
    states: dict[str, int] = {}
    if action not in DS_PATH:
        raise KeyFlowError(f"DS action {action!r}: choose one of {', '.join(DS_PATH)}")
    for node, keys in _zone_keys(duo, client, zone).items():
        match = [k for k in keys if k.keytag == keytag and k.role in {"KSK", "CSK"}]
        if not match:
            raise KeyFlowError(f"step preflight: zone {zone} has no KSK with keytag {keytag} on node {node}")
        states[node] = match[0].flags["dsAtParent"]
    # Any mix on the way there is fine (a node that already has it was told before, e.g. by a run
    # that failed on the other): each node runs only the steps it still needs.
    off_path = {n: s for n, s in states.items() if s not in DS_PATH[action]}
    if off_path:
        raise KeyFlowError(
            f"step preflight: zone {zone} key {keytag}: its DS is not ready to be marked {action} on "
            + ", ".join(f"{n} (dsAtParent {s})" for n, s in off_path.items())
        )
    request = P.KeyDsRequest(zone=zone, keytag=keytag, action="seen" if action == "seen" else "gone")
    replies = client.on_each(duo.nodes, f"ds-{action}", P.KEY_DS, request)
    at = [r.at for r in replies.values()]
    log.info("zone %s: DS of key %d marked %s on %s", zone, keytag, action, ", ".join(replies))
    nodes = {n: r.model_dump(mode="json") for n, r in replies.items()}
    return {"zone": zone, "keytag": keytag, "action": action, "nodes": nodes, "spread": max(at) - min(at)}
