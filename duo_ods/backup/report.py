"""`backup list` and `backup verify`: what the backup store holds, where each key still lives,
and whether every bundle would really restore its key."""

from __future__ import annotations

import time
from typing import Any

from duo_ods.backup.ops import bundle_of
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient


def bundles(client: NodeClient) -> list[KeyBundle]:
    """Every bundle the backup store holds."""
    return [bundle_of(b) for b in client.call("backup", P.BUNDLE_LIST).bundles]


def _where(duo: Duo, client: NodeClient) -> tuple[dict[str, dict[str, set[str]]], list[str]]:
    """locator -> {"hsm": nodes whose HSM has it, "enforcer": 'node: state' entries}; and problems."""
    where: dict[str, dict[str, set[str]]] = {}
    problems = []
    for node in duo.nodes:
        try:
            for obj in client.call(node, P.HSM_LIST).keys:
                if obj.object_class == "private":
                    where.setdefault(obj.locator, {"hsm": set(), "enforcer": set()})["hsm"].add(node)
            for key in client.call(node, P.KEY_LIST).keys:
                entry = where.setdefault(key.locator, {"hsm": set(), "enforcer": set()})
                entry["enforcer"].add(f"{node}: {key.state}")
        except DuoError as exc:
            problems.append(f"node {node} did not answer: {exc}")
    return where, problems


def backup_list(duo: Duo, client: NodeClient) -> list[dict[str, Any]]:
    where, _problems = _where(duo, client)
    dead = client.call("backup", P.DEAD_SINCE).ledger
    now = time.time()
    rows = []
    for b in bundles(client):
        live = where.get(b.locator, {"hsm": set(), "enforcer": set()})
        rows.append({
            "zone": b.zone, "role": b.role, "keytag": b.keytag, "algorithm": b.algorithm,
            "locator": b.locator, "origin": b.origin, "age_days": round((now - b.inception) / 86400, 2),
            "in_hsm": sorted(live["hsm"]), "in_enforcer": sorted(live["enforcer"]),
            "dead_since": dead.get(b.locator),  # first seen dead on every node (backup prune)
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["zone"], r["role"], r["locator"]))


def custody_problems(duo: Duo, client: NodeClient) -> list[str]:
    """Whether every token still enforces custody: sealed keys, a KEK that cannot leave (docs/security.md)."""
    problems: list[str] = []
    for target in [*duo.nodes, "backup"]:
        try:
            found = client.call(target, P.HSM_CUSTODY).problems
        except DuoError as exc:
            problems.append(f"{target}: cannot read its token's custody: {exc}")
            continue
        problems += [f"{target}: {p}" for p in found]
    return problems


def backup_verify(duo: Duo, client: NodeClient) -> dict[str, Any]:
    """Every bundle opens in the verification token and matches its public key; every key that a
    node's enforcer uses has a bundle."""
    problems: list[str] = []
    held_bundles = bundles(client)
    for b in held_bundles:
        result = client.call("backup", P.BUNDLE_VERIFY, P.LocatorRequest(locator=b.locator))
        if not result.ok:
            what = f"bundle {b.locator} (zone {b.zone}, {b.role} {b.keytag})"
            problems.append(f"{what} does not restore: {result.problem}")
    where, node_problems = _where(duo, client)
    problems += node_problems
    problems += custody_problems(duo, client)
    held = {b.locator for b in held_bundles}
    for locator, live in sorted(where.items()):
        if live["enforcer"] and locator not in held:
            problems.append(
                f"key {locator} is used by {', '.join(sorted(live['enforcer']))} but has no bundle"
            )
    record = P.VerifyResult(at=time.time(), ok=not problems, problems=len(problems))
    client.call("backup", P.VERIFY_RECORD, P.VerifyRecordRequest(record=record))  # for the exporter
    return {"ok": not problems, "bundles": len(held_bundles), "problems": problems}
