"""`backup list` and `backup verify`: what the backup store holds, where each key still lives,
and whether every bundle would really restore its key."""

from __future__ import annotations

import time
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.transport.base import Transport


def _bundles(transport: Transport) -> list[KeyBundle]:
    return [KeyBundle.from_json(text) for text in transport.call("backup", "bundle-list")["bundles"]]


def _where(duo: Duo, transport: Transport) -> tuple[dict[str, dict[str, set[str]]], list[str]]:
    """locator -> {"hsm": nodes whose HSM has it, "enforcer": 'node: state' entries}; and problems."""
    where: dict[str, dict[str, set[str]]] = {}
    problems = []
    for node in duo.nodes:
        try:
            for obj in transport.call(node, "hsm-list")["keys"]:
                if obj["object_class"] == "private":
                    where.setdefault(obj["locator"], {"hsm": set(), "enforcer": set()})["hsm"].add(node)
            for key in transport.call(node, "key-list")["keys"]:
                entry = where.setdefault(key["locator"], {"hsm": set(), "enforcer": set()})
                entry["enforcer"].add(f"{node}: {key['state']}")
        except DuoError as exc:
            problems.append(f"node {node} did not answer: {exc}")
    return where, problems


def backup_list(duo: Duo, transport: Transport) -> list[dict[str, Any]]:
    where, _problems = _where(duo, transport)
    dead = transport.call("backup", "dead-since")["ledger"]
    now = time.time()
    rows = []
    for b in _bundles(transport):
        live = where.get(b.locator, {"hsm": set(), "enforcer": set()})
        rows.append({
            "zone": b.zone, "role": b.role, "keytag": b.keytag, "algorithm": b.algorithm,
            "locator": b.locator, "origin": b.origin, "age_days": round((now - b.inception) / 86400, 2),
            "in_hsm": sorted(live["hsm"]), "in_enforcer": sorted(live["enforcer"]),
            "dead_since": dead.get(b.locator),  # first seen dead on every node (backup prune)
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["zone"], r["role"], r["locator"]))


def backup_verify(duo: Duo, transport: Transport) -> dict[str, Any]:
    """Every bundle opens in the verification token and matches its public key; every key that a
    node's enforcer uses has a bundle."""
    problems: list[str] = []
    bundles = _bundles(transport)
    for b in bundles:
        result = transport.call("backup", "bundle-verify", {"locator": b.locator})
        if not result["ok"]:
            what = f"bundle {b.locator} (zone {b.zone}, {b.role} {b.keytag})"
            problems.append(f"{what} does not restore: {result['problem']}")
    where, node_problems = _where(duo, transport)
    problems += node_problems
    held = {b.locator for b in bundles}
    for locator, live in sorted(where.items()):
        if live["enforcer"] and locator not in held:
            problems.append(
                f"key {locator} is used by {', '.join(sorted(live['enforcer']))} but has no bundle"
            )
    return {"ok": not problems, "bundles": len(bundles), "problems": problems}
