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
from dataclasses import dataclass, field

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.dnssec import keytag, make_dnskey
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.protocol.ops import Rep, Req
from duo_ods.zones.check import normalize_zone_name

log = logging.getLogger(__name__)

ROLE_CHOICES = ("csk", "pair", "ksk", "zsk")


class KeyFlowError(DuoError):
    """A step of the key flow failed; nothing reached any enforcer."""


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

    def __init__(self, client: NodeClient) -> None:
        self.client = client
        self.hsm: list[tuple[str, str]] = []  # (node, locator)
        self.bundles: list[str] = []
        self.pool: list[tuple[str, str]] = []  # (node, locator) in the enforcer's spare-key pool

    def run(self) -> None:
        pooled: set[tuple[str, str]] = set()  # still in a pool: the HSM key must stay with it
        for node, locator in reversed(self.pool):
            try:
                self.client.call(node, P.KEY_POOL_REMOVE, P.LocatorRequest(locator=locator))
            except DuoError as exc:
                pooled.add((node, locator))
                log.error("undo: could not take key %s out of node %s's key pool: %s", locator, node, exc)
        for node, locator in reversed(self.hsm):
            if (node, locator) in pooled:
                log.error("undo: key %s stays in node %s's HSM: its key pool still lists it", locator, node)
                continue
            try:
                self.client.call(node, P.KEY_DELETE, P.LocatorRequest(locator=locator))
            except DuoError as exc:
                log.error("undo: could not delete key %s from node %s: %s", locator, node, exc)
        for locator in self.bundles:
            try:
                self.client.call("backup", P.BUNDLE_REMOVE, P.LocatorRequest(locator=locator))
            except DuoError as exc:
                log.error("undo: could not remove bundle %s from the backup: %s", locator, exc)


def step(name: str, target: str, client: NodeClient, op: P.Op[Req, Rep], request: Req | None = None) -> Rep:
    """One step of a key flow; its failure is a KeyFlowError naming the step and the target."""
    return client.step(name, target, op, request, error=KeyFlowError)


def preflight(duo: Duo, client: NodeClient, zone: str) -> str:
    """Every node and the backup answer, the zone is on every node, one KEK everywhere.

    Returns the KEK fingerprint.
    """
    fingerprints: dict[str, str | None] = {}
    algorithm = duo.config.policy.algorithm
    for target in [*duo.nodes, "backup"]:
        status = step("preflight", target, client, P.KEK_STATUS, P.KekStatusRequest(algorithm=algorithm))
        fingerprints[target] = status.fingerprint
        if not status.can_wrap:
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
        if zone not in step("preflight", node, client, P.ZONE_LIST).names:
            raise KeyFlowError(f"step preflight: zone {zone} is not on node {node}; zone add it first")
    return str(next(iter(fingerprints.values())))


def share_keys(
    duo: Duo,
    client: NodeClient,
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
    kek = preflight(duo, client, zone)
    policy = duo.config.policy
    assert policy.bits is not None
    peers = [n for n in duo.nodes if n != origin]
    bundles: list[KeyBundle] = []
    for enforcer_role in enforcer_roles:
        made = step(
            "generate", origin, client, P.KEY_GENERATE,
            P.KeyGenerateRequest(algorithm=policy.algorithm, bits=policy.bits),
        )  # fmt: skip
        locator = made.locator
        undo.hsm.append((origin, locator))
        wrapped = step("wrap", origin, client, P.KEY_WRAP, P.LocatorRequest(locator=locator))
        public = base64.b64decode(made.public)
        bundle = KeyBundle(
            zone=zone, role=enforcer_role, algorithm=policy.algorithm, bits=made.bits,
            locator=locator, inception=inception, origin=origin, public=made.public,
            wrapped=wrapped.wrapped, kek=wrapped.kek,
            keytag=keytag(make_dnskey(enforcer_role, policy.algorithm, public)),
        )  # fmt: skip
        if bundle.kek != kek:
            raise KeyFlowError(f"step wrap on {origin}: wrapped under KEK {bundle.kek}, expected {kek}")
        for peer in peers:
            reply = step("copy", peer, client, P.KEY_UNWRAP, unwrap_request(bundle))
            undo.hsm.append((peer, locator))
            if not reply.confirmed:
                raise KeyFlowError(f"step copy on {peer}: the HSM did not confirm key {locator}")
        put = P.BundleRequest(bundle=P.Bundle.model_validate(bundle.__dict__))
        digest = step("backup", "backup", client, P.BUNDLE_PUT, put).digest
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


def unwrap_request(bundle: KeyBundle) -> P.KeyUnwrapRequest:
    """What a node needs to take a bundle's key into its HSM."""
    return P.KeyUnwrapRequest(
        locator=bundle.locator, algorithm=bundle.algorithm, bits=bundle.bits, public=bundle.public,
        wrapped=bundle.wrapped,
    )  # fmt: skip


def import_request(bundle: KeyBundle, zone: str, role: str, inception: int) -> P.KeyImportRequest:
    """The one `key import` every enforcer gets for a bundle's key (the same instant everywhere)."""
    return P.KeyImportRequest(
        zone=zone, locator=bundle.locator, role=role, algorithm=bundle.algorithm, bits=bundle.bits,
        inception=inception,
    )  # fmt: skip


def create_key(
    duo: Duo, client: NodeClient, zone: str, role: str | None, origin: str | None
) -> list[CreatedKey]:
    zone = normalize_zone_name(zone)
    enforcer_roles = roles_for(duo.config.policy.keys, role)
    origin = pick_origin(duo, origin)
    inception = int(time.time())
    undo = Undo(client)
    try:
        bundles = share_keys(
            duo,
            client,
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
            step("import", node, client, P.KEY_IMPORT, import_request(bundle, zone, bundle.role, inception))
            key.imported_on.append(node)
    for node in duo.nodes:
        step("enforce", node, client, P.ENFORCE)
    log.info("zone %s: keys %s on %s", zone, [k.locator for k in created], ", ".join(duo.nodes))
    return created
