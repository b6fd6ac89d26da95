"""Bundle retention: a key's bundle stays until [backup] retention after the key is dead on every node.

The backup store records when it first saw each key dead everywhere (its "dead since"
ledger); `backup prune` removes a bundle once that is longer ago than the retention. A key
counts as dead on a node when that node's enforcer database has it going out with none of its
records published any more (kaspdb.is_dead), or no longer has the key's zone. Nothing is
decided while a node does not answer or has no zones at all (a wiped node must not make every
key look dead: those bundles are what restores it).

A removed zone's keys count as dead too, so their bundles go after the retention; until then a
zone that comes back gets those same keys again, with the same DS (duo_ods.keys.reuse, which
measures the retention from the removal itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from duo_ods.backup.report import bundles
from duo_ods.config.durations import parse_duration
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient

NodeKeys = dict[str, dict[str, bool]]  # node -> locator -> dead
NodeZones = dict[str, set[str]]  # node -> its zones


@dataclass
class PrunePlan:
    ledger: dict[str, float]  # locator -> first seen dead everywhere
    remove: list[str] = field(default_factory=list)
    undecided: str | None = None  # why nothing was decided


def dead_everywhere(bundle: KeyBundle, keys: NodeKeys, zones: NodeZones) -> bool:
    return all(
        keys[node].get(bundle.locator) is True
        or (bundle.locator not in keys[node] and bundle.zone not in zones[node])
        for node in keys
    )


def plan_prune(
    bundles: list[KeyBundle],
    keys: NodeKeys,
    zones: NodeZones,
    ledger: dict[str, float],
    *,
    now: float,
    retention: float,
) -> PrunePlan:
    empty = sorted(n for n, z in zones.items() if not z)
    if empty:
        return PrunePlan(
            dict(ledger), undecided=f"node {', '.join(empty)} has no zones (wiped?): nothing pruned"
        )
    plan = PrunePlan({})
    for bundle in bundles:
        if not dead_everywhere(bundle, keys, zones):
            continue  # alive (again): its clock starts over
        since = plan.ledger[bundle.locator] = ledger.get(bundle.locator, now)
        if now - since > retention:
            plan.remove.append(bundle.locator)
    return plan


def prune(duo: Duo, client: NodeClient, dry_run: bool = False) -> dict[str, Any]:
    held = bundles(client)
    keys: NodeKeys = {}
    zones: NodeZones = {}
    for node in duo.nodes:
        try:
            keys[node] = {k.locator: k.dead for z in client.call(node, P.KEY_STATES).zones for k in z.keys}
            zones[node] = set(client.call(node, P.ZONE_LIST).names)
        except DuoError as exc:
            return {
                "removed": [],
                "dead": {},
                "undecided": f"node {node} did not answer ({exc}): nothing pruned",
            }
    ledger = client.call("backup", P.DEAD_SINCE).ledger
    retention = parse_duration(duo.config.backup.retention)
    plan = plan_prune(held, keys, zones, ledger, now=time.time(), retention=retention)
    if not dry_run and plan.undecided is None:
        for locator in plan.remove:
            client.call("backup", P.BUNDLE_REMOVE, P.LocatorRequest(locator=locator))
            plan.ledger.pop(locator, None)
        client.call("backup", P.DEAD_SINCE, P.DeadSinceRequest(ledger=plan.ledger))
    return {"removed": plan.remove, "dead": plan.ledger, "undecided": plan.undecided, "dry_run": dry_run}
