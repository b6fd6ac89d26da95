"""`key create`: one key, made in one node's HSM, in every HSM and the backup before any enforcer sees it.

Steps (invariant 1: no enforcer gets the key until the peers' HSMs and the
backup have confirmed it):
  preflight  every node answers, runs its enforcer, has the zone and the same KEK
  generate   the origin node makes the key pair in its HSM (extractable only by wrapping)
  wrap       the origin wraps the private key under the KEK
  copy       every other node unwraps it into its HSM, with the public key object
  backup     the backup store keeps the bundle and confirms it
  seal       every node's HSM marks the key unextractable, the origin's included: from here on
             no token lets it out, not even wrapped under the KEK
  import     every enforcer gets the same `key import` (same inception instant, same state)
  enforce    every enforcer runs
A failure before import removes what this run put in any HSM or the backup, so a
re-run starts clean; the error names the step.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from dataclasses import dataclass, field

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.dnssec import keytag, make_dnskey
from duo_ods.keys.journal import Journal, Made, Recorder, journal_path, key_lock, pending
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.protocol.ops import Rep, Req
from duo_ods.zones.check import normalize_zone_name

log = logging.getLogger(__name__)

ROLE_CHOICES = ("csk", "pair", "ksk", "zsk")
CONFIRM_WAIT = 30.0  # seconds for the enforcers to give a zone the successor of a rollover


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


def new_locator() -> str:
    """A key's CKA_ID, chosen by the controller (16 random bytes, as ODS's libhsm makes them), so the
    journal can name the key before any node is asked to make it."""
    return secrets.token_hex(16)


def undo_made(client: NodeClient, made: list[Made]) -> list[str]:
    """Take back what a run made before its commit point, newest first; what could not be undone.

    Each step is idempotent (a key or bundle that was never made is fine), so a journal whose
    last record was written just before a node was asked is undone the same way.
    """
    problems: list[str] = []
    pooled: set[tuple[str, str]] = set()  # still in a pool: the HSM key must stay with it
    for m in reversed(made):
        if m.kind == "hsm" and (m.target, m.locator) in pooled:
            problems.append(f"hsm {m.locator} on {m.target}: its spare-key pool still lists it")
            continue
        request = P.LocatorRequest(locator=m.locator)
        try:
            if m.kind == "pool":
                if not client.call(m.target, P.KEY_POOL_REMOVE, request).removed:
                    log.info("undo: key %s was not (or no longer) in node %s's pool", m.locator, m.target)
            elif m.kind == "hsm":
                client.call(m.target, P.KEY_DELETE, request)
            else:
                client.call("backup", P.BUNDLE_REMOVE, request)
        except DuoError as exc:
            if m.kind == "pool":
                pooled.add((m.target, m.locator))
            problems.append(f"{m.kind} {m.locator} on {m.target}: {exc}")
            log.error("undo: %s %s on %s: %s", m.kind, m.locator, m.target, exc)
    return problems


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
    journal: Recorder,
) -> list[KeyBundle]:
    """Steps generate, wrap, copy and backup for each role: the keys in every HSM and the backup.

    No enforcer learns of them here. Everything is journalled before it is asked for, for the
    caller (or the next key command, after a kill) to take back if this or a later step fails.
    """
    kek = preflight(duo, client, zone)
    policy = duo.config.policy
    assert policy.bits is not None
    peers = [n for n in duo.nodes if n != origin]
    bundles: list[KeyBundle] = []
    for enforcer_role in enforcer_roles:
        locator = new_locator()
        journal.will_make("hsm", origin, locator)
        made = step(
            "generate", origin, client, P.KEY_GENERATE,
            P.KeyGenerateRequest(algorithm=policy.algorithm, bits=policy.bits, locator=locator),
        )  # fmt: skip
        if made.locator != locator:
            raise KeyFlowError(f"step generate on {origin}: made key {made.locator}, asked for {locator}")
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
            journal.will_make("hsm", peer, locator)
            reply = step("copy", peer, client, P.KEY_UNWRAP, unwrap_request(bundle))
            if not reply.confirmed:
                raise KeyFlowError(f"step copy on {peer}: the HSM did not confirm key {locator}")
        put = P.BundleRequest(bundle=P.Bundle.model_validate(bundle.__dict__))
        journal.will_make("bundle", "backup", locator)
        digest = step("backup", "backup", client, P.BUNDLE_PUT, put).digest
        if digest != bundle.digest():
            raise KeyFlowError(
                f"step backup: the backup confirmed digest {digest}, expected {bundle.digest()}"
            )
        # Every copy is confirmed: from now on no token lets this key out again, not even wrapped.
        # (The peers' copies were unwrapped sealed; the origin's was extractable for the copy window.)
        for node in [origin, *peers]:
            if not step("seal", node, client, P.KEY_SEAL, P.LocatorRequest(locator=locator)).sealed:
                raise KeyFlowError(f"step seal on {node}: key {locator} is still extractable")
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


def _refuse_live_keys(duo: Duo, client: NodeClient, zone: str, roles: list[str]) -> None:
    """`key create` makes a zone's first keys; a zone with a live key of a role gets a rollover."""
    for node in duo.nodes:
        keys = (
            step("preflight", node, client, P.KEY_STATES, P.KeyStatesRequest(zone=zone)).keys_of(zone) or []
        )
        live = sorted(f"{k.role} {k.keytag}" for k in keys if k.role in roles and not k.dead)
        if live:
            raise KeyFlowError(
                f"zone {zone} has keys already on node {node} ({', '.join(live)}): key create makes a "
                "zone's first keys; `ods-duo key rollover` replaces one"
            )


def import_everywhere(duo: Duo, client: NodeClient, zone: str, imports: list[P.KeyImportRequest]) -> None:
    """Past the commit point: every enforcer gets every key (idempotent: a key it has is skipped)."""
    for node in duo.nodes:
        for request in imports:
            step("import", node, client, P.KEY_IMPORT, request)
    for node in duo.nodes:
        step("enforce", node, client, P.ENFORCE)


def roll_forward(duo: Duo, client: NodeClient, zone: str, role: str, locator: str) -> list[str]:
    """Past a rollover's commit point: every node whose pool still holds the successor rolls to it.

    Returns the nodes told now; the enforcers then take it from their pools (see rollover._confirm).
    """
    request = P.KeyRolloverRequest(zone=zone, role=role)
    told = []
    for node in duo.nodes:
        if locator in step("resume", node, client, P.DB_SCHEMA).pool:
            step("rollover", node, client, P.KEY_ROLLOVER, request)
            told.append(node)
    return told


def confirm_rolled(client: NodeClient, zone: str, locator: str, nodes: list[str]) -> None:
    """Until every node's enforcer has given the zone the successor (a task of its own, soon after
    `key rollover`)."""
    deadline = time.monotonic() + CONFIRM_WAIT
    for node in nodes:
        while True:
            keys = step("confirm", node, client, P.KEY_STATES, P.KeyStatesRequest(zone=zone)).keys_of(zone)
            if keys and any(k.locator == locator for k in keys):
                break
            if time.monotonic() > deadline:
                raise KeyFlowError(
                    f"step confirm: node {node} did not give zone {zone} the successor {locator} "
                    f"within {CONFIRM_WAIT:.0f} s (is its enforcer running?)"
                )
            time.sleep(0.5)


@dataclass
class Finished:
    """What finish_pending did with a journal a command left."""

    journal: Journal
    message: str
    nodes: list[str] = field(default_factory=list)  # nodes told to roll (a rollover finished forward)


def finish_pending(duo: Duo, client: NodeClient) -> Finished | None:
    """What a killed or failed key command left: undone before its commit point, finished after.

    Runs under the key lock, before any new key work. Returns what it did (None: nothing was
    left); raises when it cannot be done yet (a node does not answer), keeping the journal.
    """
    left = pending(duo)
    if left is None:
        return None
    if left.command == "backup restore":  # forward only: its steps run again from its source
        from duo_ods.backup.restore import finish_restore  # noqa: PLC0415 (restore imports this module)

        result = finish_restore(duo, client, left)
        return Finished(left, str(result["resumed"]), [str(result["node"])])
    if left.command == "kek init":  # forward past its commit point (duo_ods.keys.kek)
        from duo_ods.keys.kek import finish_kek  # noqa: PLC0415 (kek imports this module)

        return Finished(left, str(finish_kek(duo, client, left)["resumed"]))
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(left.started))
    what = f"{left.command} of zone {left.zone} (started {started})"
    told: list[str] = []
    if not left.committed:
        problems = undo_made(client, left.made)
        if problems:
            raise KeyFlowError(f"cannot undo the unfinished {what} yet: {'; '.join(problems)}")
        journal_path(duo).unlink(missing_ok=True)
        done = f"undid the unfinished {what}: {len(left.made)} step(s) taken back"
    elif left.command == "key create":
        imports = [P.KeyImportRequest.model_validate(k) for k in left.details["imports"]]
        import_everywhere(duo, client, left.zone, imports)
        journal_path(duo).unlink(missing_ok=True)
        done = f"finished the interrupted {what}: its keys are in every enforcer now"
    elif left.command == "key rollover":
        told = roll_forward(duo, client, left.zone, left.details["role"], left.details["locator"])
        confirm_rolled(client, left.zone, left.details["locator"], list(duo.nodes))
        journal_path(duo).unlink(missing_ok=True)
        done = f"finished the interrupted {what}" + (f" on {', '.join(told)}" if told else "")
    else:
        raise KeyFlowError(f"the key journal holds an unknown command {left.command!r}")
    log.warning("%s", done)
    return Finished(left, done, told)


def resume_pending(duo: Duo, client: NodeClient) -> Finished | None:
    """`ods-duo key resume`: under the key lock, finish or undo what a killed key command left."""
    with key_lock(duo, "key resume"):
        return finish_pending(duo, client)


def create_key(
    duo: Duo, client: NodeClient, zone: str, role: str | None, origin: str | None
) -> list[CreatedKey]:
    zone = normalize_zone_name(zone)
    enforcer_roles = roles_for(duo.config.policy.keys, role)
    origin = pick_origin(duo, origin)
    with key_lock(duo, f"key create {zone}"):
        finish_pending(duo, client)
        _refuse_live_keys(duo, client, zone, enforcer_roles)
        inception = int(time.time())
        journal = Recorder(journal_path(duo), Journal("key create", zone, time.time()))
        try:
            bundles = share_keys(
                duo, client, zone=zone, enforcer_roles=enforcer_roles, origin=origin, inception=inception,
                journal=journal,
            )  # fmt: skip
        except DuoError as exc:
            problems = undo_made(client, journal.journal.made)
            if problems:  # the journal stays: the next key command undoes the rest
                raise KeyFlowError(
                    f"{exc}; not all of it could be undone yet ({'; '.join(problems)})"
                ) from exc
            journal.close()
            raise

        # Only now may an enforcer learn about the keys (invariant 1). From here the run finishes
        # forward: the keys are in every HSM and the backup, and importing again is idempotent.
        imports = [import_request(b, zone, b.role, inception) for b in bundles]
        journal.commit(imports=[r.model_dump() for r in imports])
        try:
            import_everywhere(duo, client, zone, imports)
        except DuoError as exc:
            raise KeyFlowError(
                f"{exc}; the keys are in every HSM and the backup: `ods-duo key resume` (or the next key "
                "command) imports them once every node answers"
            ) from exc
        journal.close()
    created = [
        CreatedKey(zone, b.role, b.locator, b.keytag, origin, inception, list(duo.nodes)) for b in bundles
    ]
    log.info("zone %s: keys %s on %s", zone, [k.locator for k in created], ", ".join(duo.nodes))
    return created
