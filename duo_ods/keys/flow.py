"""`key create`: one key, made in one node's HSM, in every HSM and the backup before any enforcer sees it.

Steps (invariant 1: no enforcer gets the key until the peers' HSMs and the
backup have confirmed it):
  preflight  every node answers, runs its enforcer, has the zone and the same KEK
  generate   the origin node makes the key pair in its HSM (extractable only by wrapping)
  wrap       the origin wraps the private key under the KEK
  copy       every other node unwraps it into its HSM, with the public key object
  backup     the backup store keeps the bundle and confirms it
  import     every enforcer gets the same `key import` (same inception instant, same state)
  enforce    every enforcer runs
A failure before import removes what this run put in any HSM or the backup, so a
re-run starts clean; the error names the step.
"""

from __future__ import annotations

import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.dnssec import keytag, make_dnskey
from duo_ods.transport.base import Transport
from duo_ods.zones.check import normalize_zone_name

log = logging.getLogger(__name__)

ROLE_CHOICES = ("csk", "pair", "ksk", "zsk")


class KeyFlowError(DuoError):
    """A step of the key flow failed; nothing reached any enforcer."""


class PartlyDone(KeyFlowError):
    """A step run on every node at once failed on some of them."""

    def __init__(self, message: str, done: list[str], failed: list[str]) -> None:
        super().__init__(message)
        self.done = done
        self.failed = failed


def roles_for(policy_keys: str, role: str | None) -> list[str]:
    """The enforcer roles a --role asks for, checked against the policy."""
    role = role or ("csk" if policy_keys == "csk" else "pair")
    if role not in ROLE_CHOICES:
        raise KeyFlowError(f"--role {role}: choose one of {', '.join(ROLE_CHOICES)}")
    if policy_keys == "csk" and role != "csk":
        raise KeyFlowError(f"--role {role}: the policy signs with a CSK; use --role csk")
    if policy_keys == "ksk-zsk" and role == "csk":
        raise KeyFlowError("--role csk: the policy has a KSK and a ZSK; use --role pair, ksk or zsk")
    return ["KSK", "ZSK"] if role == "pair" else [role.upper()]


@dataclass
class CreatedKey:
    zone: str
    role: str
    locator: str
    keytag: int
    origin: str
    inception: int
    imported_on: list[str] = field(default_factory=list)


class Undo:
    """What this run put where, so a failure before import can take it back."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.hsm: list[tuple[str, str]] = []  # (node, locator)
        self.bundles: list[str] = []
        self.pool: list[tuple[str, str]] = []  # (node, locator) in the enforcer's spare-key pool

    def run(self) -> None:
        pooled: set[tuple[str, str]] = set()  # still in a pool: the HSM key must stay with it
        for node, locator in reversed(self.pool):
            try:
                self.transport.call(node, "key-pool-remove", {"locator": locator})
            except DuoError as exc:
                pooled.add((node, locator))
                log.error("undo: could not take key %s out of node %s's key pool: %s", locator, node, exc)
        for node, locator in reversed(self.hsm):
            if (node, locator) in pooled:
                log.error("undo: key %s stays in node %s's HSM: its key pool still lists it", locator, node)
                continue
            try:
                self.transport.call(node, "key-delete", {"locator": locator})
            except DuoError as exc:
                log.error("undo: could not delete key %s from node %s: %s", locator, node, exc)
        for locator in self.bundles:
            try:
                self.transport.call("backup", "bundle-remove", {"locator": locator})
            except DuoError as exc:
                log.error("undo: could not remove bundle %s from the backup: %s", locator, exc)


def step(name: str, target: str, transport: Transport, op: str, payload: dict[str, Any] | None = None) -> Any:
    try:
        return transport.call(target, op, payload)
    except DuoError as exc:
        raise KeyFlowError(f"step {name} on {target}: {exc}") from exc


def on_every_node(
    duo: Duo, transport: Transport, name: str, op: str, payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One step on every node at once (threads), so the enforcers act within the same second.

    ODS stamps state changes with the time a command runs: nodes told seconds apart stay
    that far apart through the whole rollover. Raises after every node has answered.
    """
    with ThreadPoolExecutor(max_workers=len(duo.nodes)) as pool:
        futures = {node: pool.submit(transport.call, node, op, payload) for node in duo.nodes}
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for node, future in futures.items():
        try:
            results[node] = future.result()
        except DuoError as exc:
            failed[node] = str(exc)
    if failed:
        done = f"; done on {', '.join(results)}" if results else ""
        message = f"step {name}: " + "; ".join(f"{n}: {e}" for n, e in failed.items()) + done
        raise PartlyDone(message, list(results), list(failed))
    return results


def preflight(duo: Duo, transport: Transport, zone: str) -> str:
    """Every node and the backup answer, the zone is on every node, one KEK everywhere.

    Returns the KEK fingerprint.
    """
    fingerprints: dict[str, str | None] = {}
    algorithm = duo.config.policy.algorithm
    for target in [*duo.nodes, "backup"]:
        status = step("preflight", target, transport, "kek-status", {"algorithm": algorithm})
        fingerprints[target] = status["fingerprint"]
        if not status["can_wrap"]:
            raise KeyFlowError(
                f"step preflight: the HSM of {target} cannot wrap algorithm {algorithm} private keys, "
                "so such keys cannot be shared; choose another algorithm"
            )
    missing = [t for t, f in fingerprints.items() if f is None]
    if missing:
        raise KeyFlowError(f"step preflight: no KEK on {', '.join(missing)}; run kek init first")
    if len(set(fingerprints.values())) != 1:
        raise KeyFlowError(f"step preflight: the KEKs differ: {fingerprints}")
    for node in duo.nodes:
        zones = [z["name"] for z in step("preflight", node, transport, "zone-list")["zones"]]
        if zone not in zones:
            raise KeyFlowError(f"step preflight: zone {zone} is not on node {node}; zone add it first")
    return str(next(iter(fingerprints.values())))


def share_keys(
    duo: Duo,
    transport: Transport,
    *,
    zone: str,
    enforcer_roles: list[str],
    origin: str,
    inception: int,
    undo: Undo,
) -> list[KeyBundle]:
    """Steps generate, wrap, copy and backup for each role: the keys in every HSM and the backup.

    No enforcer learns of them here. What is made is recorded in `undo`, for the caller to take
    back if this or a later step fails.
    """
    kek = preflight(duo, transport, zone)
    policy = duo.config.policy
    assert policy.bits is not None
    peers = [n for n in duo.nodes if n != origin]
    bundles: list[KeyBundle] = []
    for enforcer_role in enforcer_roles:
        made = step(
            "generate",
            origin,
            transport,
            "key-generate",
            {"algorithm": policy.algorithm, "bits": policy.bits},
        )
        locator = made["locator"]
        undo.hsm.append((origin, locator))
        wrapped = step("wrap", origin, transport, "key-wrap", {"locator": locator})
        public = base64.b64decode(made["public"])
        bundle = KeyBundle(
            zone=zone, role=enforcer_role, algorithm=policy.algorithm, bits=int(made["bits"]),
            locator=locator, inception=inception, origin=origin, public=made["public"],
            wrapped=wrapped["wrapped"], kek=wrapped["kek"],
            keytag=keytag(make_dnskey(enforcer_role, policy.algorithm, public)),
        )  # fmt: skip
        if bundle.kek != kek:
            raise KeyFlowError(f"step wrap on {origin}: wrapped under KEK {bundle.kek}, expected {kek}")
        for peer in peers:
            payload = {k: getattr(bundle, k) for k in ("locator", "algorithm", "bits", "public", "wrapped")}
            reply = step("copy", peer, transport, "key-unwrap", payload)
            undo.hsm.append((peer, locator))
            if not reply.get("confirmed"):
                raise KeyFlowError(f"step copy on {peer}: the HSM did not confirm key {locator}")
        digest = step("backup", "backup", transport, "bundle-put", {"bundle": bundle.to_json()})["digest"]
        undo.bundles.append(locator)
        if digest != bundle.digest():
            raise KeyFlowError(
                f"step backup: the backup confirmed digest {digest}, expected {bundle.digest()}"
            )
        bundles.append(bundle)
    return bundles


def pick_origin(duo: Duo, origin: str | None) -> str:
    origin = origin or duo.config.key_origin or next(iter(duo.nodes))
    duo.node(origin)  # a clear error for an unknown node
    return origin


def create_key(
    duo: Duo, transport: Transport, zone: str, role: str | None, origin: str | None
) -> list[CreatedKey]:
    zone = normalize_zone_name(zone)
    enforcer_roles = roles_for(duo.config.policy.keys, role)
    origin = pick_origin(duo, origin)
    inception = int(time.time())
    undo = Undo(transport)
    try:
        bundles = share_keys(
            duo,
            transport,
            zone=zone,
            enforcer_roles=enforcer_roles,
            origin=origin,
            inception=inception,
            undo=undo,
        )
    except DuoError:
        undo.run()
        raise

    # Only now may an enforcer learn about the keys (invariant 1).
    created = [CreatedKey(zone, b.role, b.locator, b.keytag, origin, inception) for b in bundles]
    for node in duo.nodes:
        for bundle, key in zip(bundles, created, strict=True):
            payload = {
                "zone": zone, "locator": bundle.locator, "role": bundle.role, "algorithm": bundle.algorithm,
                "bits": bundle.bits, "inception": inception,
            }  # fmt: skip
            step("import", node, transport, "key-import", payload)
            key.imported_on.append(node)
    for node in duo.nodes:
        step("enforce", node, transport, "enforce")
    log.info("zone %s: keys %s on %s", zone, [k.locator for k in created], ", ".join(duo.nodes))
    return created
