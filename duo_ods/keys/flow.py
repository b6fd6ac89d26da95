"""`key create`: keys made in one node's HSM, in every HSM and the backup before any enforcer sees them.

Steps (invariant 1: no enforcer gets a key until the peers' HSMs and the backup have confirmed it):
  preflight  every node answers, runs its enforcer, has the zones and the same KEK; zones that
             have keys already (or are not on every node) are reported and left out
  generate   the origin node makes the key pairs in its HSM (extractable only by wrapping)
  wrap       the origin wraps the private keys under the KEK
  copy       every other node unwraps them into its HSM, with the public key objects
  backup     the backup store keeps the bundles and confirms them (at the same time as the copy)
  seal       every node's HSM marks the keys unextractable, the origin's included: from here on
             no token lets them out, not even wrapped under the KEK
  import     every enforcer gets the same `key import`s (same inception instant, same state)
  enforce    every enforcer runs
Many zones go through these steps together, in batches of KEY_BATCH zones: each step is one
request per node (the *-batch operations), sent to the nodes at once. Each batch has its own
journal, commit point and undo, exactly as one zone has: a failure before import removes what
the batch put in any HSM or the backup, so a re-run starts clean; the error names the step.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.dnssec import keytag, make_dnskey
from duo_ods.keys.journal import Journal, Made, Recorder, journal_path, key_lock, pending, unpark
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.protocol.ops import Rep, Req

log = logging.getLogger(__name__)

ROLE_CHOICES = ("csk", "pair", "ksk", "zsk")
CONFIRM_WAIT = 30.0  # seconds for the enforcers to give a zone the successor of a rollover
# Zones per journalled batch of `key create`: big enough that a batch's round trips and fsyncs are
# shared by many keys, small enough that the watcher's file events and SIGTERM wait one batch
# (seconds), and that a failure takes back (or a kill leaves) one batch's keys only.
KEY_BATCH = 25


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


def _ask_kek(client: NodeClient, target: str, algorithm: int, statuses: dict[str, P.KekStatusReply]) -> None:
    statuses[target] = client.call(target, P.KEK_STATUS, P.KekStatusRequest(algorithm=algorithm))


def _one_kek(statuses: dict[str, P.KekStatusReply], algorithm: int) -> str:
    """The one KEK every target holds, able to wrap the policy's keys; else one line saying why not."""
    unable = [t for t, s in statuses.items() if not s.can_wrap]
    if unable:
        whose = "the HSM of " + unable[0] if len(unable) == 1 else "the HSMs of " + ", ".join(unable)
        raise KeyFlowError(
            f"step preflight: {whose} cannot wrap algorithm {algorithm} private keys, "
            "so such keys cannot be shared; choose another algorithm"
        )
    fingerprints = {t: s.fingerprint for t, s in statuses.items()}
    missing = [t for t, f in fingerprints.items() if f is None]
    if missing:
        raise KeyFlowError(f"step preflight: no KEK on {', '.join(missing)}; run kek init first")
    if len(set(fingerprints.values())) != 1:
        raise KeyFlowError(f"step preflight: the KEKs differ: {fingerprints}")
    return str(next(iter(fingerprints.values())))


def preflight_kek(duo: Duo, client: NodeClient) -> str:
    """Every node and the backup answer (asked at once), one KEK everywhere that can wrap the
    policy's keys. Returns the KEK fingerprint."""
    statuses: dict[str, P.KekStatusReply] = {}
    algorithm = duo.config.policy.algorithm
    targets = [*duo.nodes, "backup"]
    fan_out({("preflight", t): partial(_ask_kek, client, t, algorithm, statuses) for t in targets})
    return _one_kek({t: statuses[t] for t in targets}, algorithm)


def preflight(duo: Duo, client: NodeClient, zone: str) -> str:
    """Every node and the backup answer, the zone is on every node, one KEK everywhere.

    Returns the KEK fingerprint.
    """
    kek = preflight_kek(duo, client)
    for node in duo.nodes:
        if zone not in step("preflight", node, client, P.ZONE_LIST).names:
            raise KeyFlowError(f"step preflight: zone {zone} is not on node {node}; zone add it first")
    return kek


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
        # The copies (every peer) and the backup at once: each only adds what the journal names already.
        for peer in peers:
            journal.will_make("hsm", peer, locator)
        journal.will_make("bundle", "backup", locator)
        fan_out({
            **{("copy", peer): partial(_copy_one, client, peer, bundle) for peer in peers},
            ("backup", "backup"): partial(_backup_one, client, bundle),
        })  # fmt: skip
        # Every copy is confirmed: from now on no token lets this key out again, not even wrapped.
        # (The peers' copies were unwrapped sealed; the origin's was extractable for the copy window.)
        fan_out({("seal", node): partial(_seal_one, client, node, locator) for node in [origin, *peers]})
        bundles.append(bundle)
    return bundles


def _copy_one(client: NodeClient, peer: str, bundle: KeyBundle) -> None:
    if not client.call(peer, P.KEY_UNWRAP, unwrap_request(bundle)).confirmed:
        raise KeyFlowError(f"the HSM did not confirm key {bundle.locator}")


def _backup_one(client: NodeClient, bundle: KeyBundle) -> None:
    put = P.BundleRequest(bundle=P.Bundle.model_validate(bundle.__dict__))
    digest = client.call("backup", P.BUNDLE_PUT, put).digest
    if digest != bundle.digest():
        raise KeyFlowError(f"the backup confirmed digest {digest}, expected {bundle.digest()}")


def _seal_one(client: NodeClient, node: str, locator: str) -> None:
    if not client.call(node, P.KEY_SEAL, P.LocatorRequest(locator=locator)).sealed:
        raise KeyFlowError(f"key {locator} is still extractable")


def share_batch(
    duo: Duo,
    client: NodeClient,
    *,
    zones: list[str],
    enforcer_roles: list[str],
    origin: str,
    inception: int,
    kek: str,
    journal: Recorder,
) -> list[KeyBundle]:
    """Steps generate, wrap, copy, backup and seal for every role of every zone, one request per
    node and step: the keys in every HSM and the backup, sealed.

    No enforcer learns of them here. Each step's keys are journalled (one record) before any node
    is asked to make them, for the caller (or the next key command, after a kill) to take back.
    """
    policy = duo.config.policy
    assert policy.bits is not None
    peers = [n for n in duo.nodes if n != origin]
    wanted = [(zone, role, new_locator()) for zone in zones for role in enforcer_roles]
    locators = [locator for _zone, _role, locator in wanted]
    journal.will_make_all([Made("hsm", origin, locator) for locator in locators])
    generate = P.KeyGenerateBatchRequest(
        keys=[P.KeyGenerateRequest(algorithm=policy.algorithm, bits=policy.bits, locator=x) for x in locators]
    )
    made = step("generate", origin, client, P.KEY_GENERATE_BATCH, generate).keys
    if [m.locator for m in made] != locators:
        raise KeyFlowError(f"step generate on {origin}: it did not make the {len(locators)} keys asked for")
    wrapped = step("wrap", origin, client, P.KEY_WRAP_BATCH, P.LocatorsRequest(locators=locators)).keys
    if len(wrapped) != len(locators):
        raise KeyFlowError(f"step wrap on {origin}: {len(wrapped)} keys wrapped, {len(locators)} asked for")
    bundles = []
    for (zone, role, locator), key, wrap in zip(wanted, made, wrapped, strict=True):
        if wrap.kek != kek:
            raise KeyFlowError(f"step wrap on {origin}: wrapped under KEK {wrap.kek}, expected {kek}")
        bundles.append(KeyBundle(
            zone=zone, role=role, algorithm=policy.algorithm, bits=key.bits, locator=locator,
            inception=inception, origin=origin, public=key.public, wrapped=wrap.wrapped, kek=wrap.kek,
            keytag=keytag(make_dnskey(role, policy.algorithm, base64.b64decode(key.public))),
        ))  # fmt: skip

    # The copies and the backup at once: both only add what the journal names already.
    journal.will_make_all(
        [Made("hsm", peer, locator) for peer in peers for locator in locators]
        + [Made("bundle", "backup", locator) for locator in locators]
    )
    unwrap = P.KeyUnwrapBatchRequest(keys=[unwrap_request(b) for b in bundles])

    def copy(peer: str) -> None:
        replies = client.call(peer, P.KEY_UNWRAP_BATCH, unwrap).keys
        if len(replies) != len(bundles) or not all(r.confirmed for r in replies):
            raise KeyFlowError(f"the HSM did not confirm all {len(bundles)} keys")

    def backup() -> None:
        put = P.BundleBatchRequest(bundles=[P.Bundle.model_validate(b.__dict__) for b in bundles])
        digests = client.call("backup", P.BUNDLE_PUT_BATCH, put).digests
        expected = [b.digest() for b in bundles]
        if digests != expected:
            raise KeyFlowError(f"the backup confirmed digests {digests}, expected {expected}")

    fan_out({
        **{("copy", peer): partial(copy, peer) for peer in peers},
        ("backup", "backup"): backup,
    })  # fmt: skip

    # Every copy is confirmed: from now on no token lets these keys out again, not even wrapped.
    # (The peers' copies were unwrapped sealed; the origin's were extractable for the copy window.)
    def seal(node: str) -> None:
        replies = client.call(node, P.KEY_SEAL_BATCH, P.LocatorsRequest(locators=locators)).keys
        if len(replies) != len(locators) or not all(r.sealed for r in replies):
            raise KeyFlowError("a key is still extractable")

    fan_out({("seal", node): partial(seal, node) for node in [origin, *peers]})
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


def fan_out(calls: dict[tuple[str, str], Callable[[], None]]) -> None:
    """Steps on several targets at once, one thread per target (each target has its own agent):
    the keys (step, target) name the step. Every call runs to its end; the failures are then one
    KeyFlowError naming each step and target that failed."""
    if len(calls) == 1:
        [((name, target), call)] = calls.items()
        try:
            call()
        except DuoError as exc:
            raise KeyFlowError(f"step {name} on {target}: {exc}") from exc
        return
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {key: pool.submit(call) for key, call in calls.items()}
    failed: list[str] = []
    first: DuoError | None = None
    for (name, target), future in futures.items():
        try:
            future.result()
        except DuoError as exc:
            failed.append(f"step {name} on {target}: {exc}")
            first = first or exc
    if failed:
        raise KeyFlowError("; ".join(failed)) from first


def _live_keys_refusal(zone: str, node: str, keys: list[P.KeyStateMsg], roles: list[str]) -> str | None:
    """`key create` makes a zone's first keys; a zone with a live key of a role gets a rollover."""
    live = sorted(f"{k.role} {k.keytag}" for k in keys if k.role in roles and not k.dead)
    if not live:
        return None
    return (
        f"zone {zone} has keys already on node {node} ({', '.join(live)}): key create makes a "
        "zone's first keys; `ods-duo key rollover` replaces one"
    )


def import_everywhere(duo: Duo, client: NodeClient, imports: list[P.KeyImportRequest]) -> None:
    """Past the commit point: every enforcer gets every key (idempotent: a key it has is skipped),
    the nodes at once; then every enforcer runs."""
    for start in range(0, len(imports), P.MAX_BATCH):
        request = P.KeyImportBatchRequest(keys=imports[start : start + P.MAX_BATCH])
        fan_out({
            ("import", node): partial(call_only, client, node, P.KEY_IMPORT_BATCH, request)
            for node in duo.nodes
        })  # fmt: skip
    fan_out({("enforce", node): partial(call_only, client, node, P.ENFORCE) for node in duo.nodes})


def call_only(client: NodeClient, target: str, op: P.Op[Req, Rep], request: Req | None = None) -> None:
    """One call whose reply is not needed (a step for fan_out)."""
    client.call(target, op, request)


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
    unpark(duo)  # a key command's journal a killed restore had set aside (keys/journal.park)
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
    zones = left.zone if ", " not in left.zone else f"zones {left.zone}"
    what = f"{left.command} of {'zone ' if zones == left.zone else ''}{zones} (started {started})"
    told: list[str] = []
    if not left.committed:
        problems = undo_made(client, left.made)
        if problems:
            raise KeyFlowError(f"cannot undo the unfinished {what} yet: {'; '.join(problems)}")
        journal_path(duo).unlink(missing_ok=True)
        done = f"undid the unfinished {what}: {len(left.made)} step(s) taken back"
    elif left.command == "key create":
        imports = [P.KeyImportRequest.model_validate(k) for k in left.details["imports"]]
        import_everywhere(duo, client, imports)
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


@dataclass
class ZoneOutcome:
    """What `key create` did for one zone of its list."""

    zone: str
    keys: list[CreatedKey] = field(default_factory=list)
    error: DuoError | None = None
    has_keys: bool = False  # refused because it has live keys already (for the watcher: nothing to do)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        return {
            "zone": self.zone, "ok": self.ok, "error": None if self.error is None else str(self.error),
            "has_keys": self.has_keys, "keys": [k.__dict__ for k in self.keys],
        }  # fmt: skip


def create_key(
    duo: Duo, client: NodeClient, zone: str, role: str | None, origin: str | None
) -> list[CreatedKey]:
    """Keys for one zone; its failure is raised."""
    [outcome] = create_keys(duo, client, [zone], role, origin)
    if outcome.error is not None:
        raise outcome.error
    return outcome.keys


def create_keys(
    duo: Duo,
    client: NodeClient,
    zones: Sequence[str],
    role: str | None,
    origin: str | None,
    *,
    batch: int = KEY_BATCH,
) -> list[ZoneOutcome]:
    """Keys for many zones under one key lock and one preflight, in journalled batches.

    A zone that cannot have keys (a bad name, not on every node, keys already) is reported and the
    others go on. A batch that fails stops the run (its journal may be left for `key resume`); the
    zones after it are reported as not tried. Raises only for what stops every zone (the
    preflight: a node or the backup does not answer, no KEK, different KEKs).
    """
    enforcer_roles = roles_for(duo.config.policy.keys, role)
    origin = pick_origin(duo, origin)
    outcomes: dict[str, ZoneOutcome] = {}
    order: list[str] = []
    names: list[str] = []
    for given in zones:
        try:
            name = normalize_zone_name(given)
        except DuoError as exc:
            order.append(given)
            outcomes[given] = ZoneOutcome(given, error=exc)
            continue
        if name not in order:
            order.append(name)
            names.append(name)
    what = f"key create {names[0]}" if len(names) == 1 else f"key create of {len(names)} zones"
    with key_lock(duo, what):
        finish_pending(duo, client)
        names = _reuse_returning(duo, client, names, outcomes)
        kek, refused = _preflight_zones(duo, client, names, enforcer_roles)
        outcomes.update(refused)
        ready = [z for z in names if z not in refused]
        stopped: DuoError | None = None
        for start in range(0, len(ready), max(1, batch)):
            chunk = ready[start : start + max(1, batch)]
            if stopped is not None:
                for zone in chunk:
                    outcomes[zone] = ZoneOutcome(zone, error=KeyFlowError(f"not tried: {stopped}"))
                continue
            try:
                created = _create_batch(duo, client, chunk, enforcer_roles, origin=origin, kek=kek)
            except DuoError as exc:
                stopped = exc
                for zone in chunk:
                    outcomes[zone] = ZoneOutcome(zone, error=exc)
                continue
            for zone in chunk:
                outcomes[zone] = ZoneOutcome(zone, keys=[k for k in created if k.zone == zone])
            log.info("keys made for %d zone(s) on %s: %s", len(chunk), ", ".join(duo.nodes), ", ".join(chunk))
    return [outcomes[z] for z in order]


def _reuse_returning(
    duo: Duo, client: NodeClient, names: list[str], outcomes: dict[str, ZoneOutcome]
) -> list[str]:
    """Zones back after removal get their keys from before removal (same DS) instead of new ones
    (keys.reuse); returns the zones that still need keys."""
    from duo_ods.keys.reuse import reuse_removed  # noqa: PLC0415 (reuse imports this module)

    rest: list[str] = []
    for zone in names:
        try:
            back = reuse_removed(duo, client, zone)
        except DuoError as exc:
            outcomes[zone] = ZoneOutcome(zone, error=exc)
            continue
        if back is not None and back.outcome == "reused":
            outcomes[zone] = ZoneOutcome(zone, keys=back.keys)
        else:
            rest.append(zone)
    return rest


def _preflight_zones(
    duo: Duo, client: NodeClient, zones: list[str], roles: list[str]
) -> tuple[str, dict[str, ZoneOutcome]]:
    """The KEK fingerprint, and the zones that cannot have keys now, with why (the nodes at once)."""
    if not zones:
        return "", {}
    listed: dict[str, set[str]] = {}
    states: dict[str, P.KeyStatesReply] = {}
    # One zone: its own key states; more: every zone's, in one read per node.
    ask = P.KeyStatesRequest(zone=zones[0] if len(zones) == 1 else None)

    statuses: dict[str, P.KekStatusReply] = {}
    algorithm = duo.config.policy.algorithm

    def look(node: str) -> None:
        states[node] = client.call(node, P.KEY_STATES, ask)
        listed[node] = set(client.call(node, P.ZONE_LIST).names)
        _ask_kek(client, node, algorithm, statuses)

    # Every target at once: their agents start side by side, not one after the other.
    fan_out({
        **{("preflight", node): partial(look, node) for node in duo.nodes},
        ("preflight", "backup"): partial(_ask_kek, client, "backup", algorithm, statuses),
    })  # fmt: skip
    kek = _one_kek({t: statuses[t] for t in [*duo.nodes, "backup"]}, algorithm)
    refused: dict[str, ZoneOutcome] = {}
    for zone in zones:
        for node in duo.nodes:
            if zone not in listed[node]:
                error = KeyFlowError(f"step preflight: zone {zone} is not on node {node}; zone add it first")
                refused[zone] = ZoneOutcome(zone, error=error)
                break
            problem = _live_keys_refusal(zone, node, states[node].keys_of(zone) or [], roles)
            if problem:
                refused[zone] = ZoneOutcome(zone, error=KeyFlowError(problem), has_keys=True)
                break
    return kek, refused


def zones_without_keys(duo: Duo, client: NodeClient) -> list[str]:
    """Zones on every node that no node's enforcer has a live key for (asked at once)."""
    listed: dict[str, set[str]] = {}
    keyed: set[str] = set()

    def look(node: str) -> None:
        listed[node] = set(client.call(node, P.ZONE_LIST).names)
        states = client.call(node, P.KEY_STATES, P.KeyStatesRequest(zone=None))
        keyed.update(z.zone for z in states.zones if any(not k.dead for k in z.keys))

    fan_out({("look", node): partial(look, node) for node in duo.nodes})
    everywhere = set.intersection(*listed.values()) if listed else set()
    return sorted(everywhere - keyed)


def _create_batch(
    duo: Duo, client: NodeClient, zones: list[str], roles: list[str], *, origin: str, kek: str
) -> list[CreatedKey]:
    """One journalled batch: shared, committed, imported everywhere."""
    inception = int(time.time())
    journal = Recorder(journal_path(duo), Journal("key create", ", ".join(zones), time.time()))
    try:
        bundles = share_batch(
            duo, client, zones=zones, enforcer_roles=roles, origin=origin, inception=inception, kek=kek,
            journal=journal,
        )  # fmt: skip
    except DuoError as exc:
        problems = undo_made(client, journal.journal.made)
        if problems:  # the journal stays: the next key command undoes the rest
            raise KeyFlowError(f"{exc}; not all of it could be undone yet ({'; '.join(problems)})") from exc
        journal.close()
        raise

    # Only now may an enforcer learn about the keys (invariant 1). From here the batch finishes
    # forward: the keys are in every HSM and the backup, and importing again is idempotent.
    imports = [import_request(b, b.zone, b.role, inception) for b in bundles]
    journal.commit(imports=[r.model_dump() for r in imports])
    try:
        import_everywhere(duo, client, imports)
    except DuoError as exc:
        raise KeyFlowError(
            f"{exc}; the keys are in every HSM and the backup: `ods-duo key resume` (or the next key "
            "command) imports them once every node answers"
        ) from exc
    journal.close()
    nodes = list(duo.nodes)
    return [CreatedKey(b.zone, b.role, b.locator, b.keytag, origin, inception, nodes) for b in bundles]
