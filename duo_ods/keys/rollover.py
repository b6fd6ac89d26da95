"""`key rollover` and `key ds-seen`/`ds-gone`: both enforcers move their keys in step.

A rollover's successor is made and shared exactly like `key create` (invariant 1: every HSM
and the backup hold it before any enforcer sees it), then put into each enforcer's spare-key
pool, from which `ods-enforcer key rollover` takes it. The pool is per policy, so the
successor must be the only key waiting there: rollovers are serialised by a lock, and a pool
that already holds keys is refused.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.flow import KeyFlowError, Undo, on_every_node, pick_origin, share_keys, step
from duo_ods.transport.base import Transport
from duo_ods.zones.check import normalize_zone_name

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


@contextmanager
def key_lock(duo: Duo) -> Iterator[None]:
    """One pool-using key operation at a time for this duo (on this controller)."""
    path: Path = duo.backup_dir / "state" / "keys.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyFlowError(f"another key rollover runs for this duo (lock {path})") from None
        yield


def _zone_keys(duo: Duo, transport: Transport, zone: str) -> dict[str, list[dict[str, Any]]]:
    """node -> the zone's keys with their enforcer states."""
    keys: dict[str, list[dict[str, Any]]] = {}
    for node in duo.nodes:
        zones = step("preflight", node, transport, "key-states", {"zone": zone})["zones"]
        if not zones:
            raise KeyFlowError(f"step preflight: zone {zone} is not on node {node}")
        keys[node] = zones[0]["keys"]
    return keys


def rollover(duo: Duo, transport: Transport, zone: str, role: str, origin: str | None = None) -> Rollover:
    zone = normalize_zone_name(zone)
    if role not in ROLLOVER_ROLES:
        raise KeyFlowError(f"--role {role}: choose one of {', '.join(ROLLOVER_ROLES)}")
    enforcer_role = role.upper()
    origin = pick_origin(duo, origin)
    with key_lock(duo):
        for node in duo.nodes:
            pool = step("preflight", node, transport, "db-schema")["pool"]
            if pool:
                raise KeyFlowError(
                    f"step preflight: node {node}'s spare-key pool holds {', '.join(pool)}: the rollover "
                    "could take one of those instead of the shared successor; remove them first"
                )
        before = _zone_keys(duo, transport, zone)
        for node, keys in before.items():
            if not any(k["role"] == enforcer_role for k in keys):
                raise KeyFlowError(f"step preflight: zone {zone} has no {enforcer_role} on node {node}")
        inception = int(time.time())
        undo = Undo(transport)
        try:
            [bundle] = share_keys(
                duo, transport, zone=zone, enforcer_roles=[enforcer_role], origin=origin,
                inception=inception, undo=undo,
            )  # fmt: skip
            for node in duo.nodes:
                payload = {
                    "locator": bundle.locator, "role": enforcer_role, "algorithm": bundle.algorithm,
                    "bits": bundle.bits, "inception": inception,
                }  # fmt: skip
                step("pool", node, transport, "key-pool-add", payload)
                undo.pool.append((node, bundle.locator))
        except DuoError:
            undo.run()
            raise
        result = Rollover(zone, enforcer_role, bundle.locator, bundle.keytag, origin)
        started = on_every_node(
            duo, transport, "rollover", "key-rollover", {"zone": zone, "role": enforcer_role}
        )
        result.started = {node: float(reply["at"]) for node, reply in started.items()}
        for node, keys in _zone_keys(duo, transport, zone).items():
            if not any(k["locator"] == bundle.locator for k in keys):
                raise KeyFlowError(
                    f"step confirm: node {node} did not give zone {zone} the successor {bundle.locator}"
                )
    log.info(
        "zone %s: %s rollover to key %s (tag %d) started on %s, %.2f s apart",
        zone, enforcer_role, bundle.locator, bundle.keytag, ", ".join(result.started), result.spread,
    )  # fmt: skip
    return result


def mark_ds(duo: Duo, transport: Transport, zone: str, keytag: int, action: str) -> dict[str, Any]:
    """`key ds-seen` / `ds-gone`: the parent's DS for a KSK appeared or went, told to both nodes at once."""
    zone = normalize_zone_name(zone)
    states: dict[str, str] = {}
    for node, keys in _zone_keys(duo, transport, zone).items():
        match = [k for k in keys if k["keytag"] == keytag and k["role"] in {"KSK", "CSK"}]
        if not match:
            raise KeyFlowError(f"step preflight: zone {zone} has no KSK with keytag {keytag} on node {node}")
        states[node] = str(match[0]["flags"]["dsAtParent"])
    if len(set(states.values())) != 1:
        raise KeyFlowError(
            f"step preflight: zone {zone} key {keytag}: the nodes disagree on the DS state "
            f"(dsAtParent {states}); run `ods-duo check` and let the lagging enforcer catch up first"
        )
    replies = on_every_node(
        duo, transport, f"ds-{action}", "key-ds", {"zone": zone, "keytag": keytag, "action": action}
    )
    at = [float(r["at"]) for r in replies.values()]
    log.info("zone %s: DS of key %d marked %s on %s", zone, keytag, action, ", ".join(replies))
    return {"zone": zone, "keytag": keytag, "action": action, "nodes": replies, "spread": max(at) - min(at)}
