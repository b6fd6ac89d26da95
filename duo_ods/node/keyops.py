"""Node-local key operations: the node's HSM (keys, KEK) and its enforcer's keys.

Binary values travel base64 in the protocol's messages. Only wrapped private keys
ever leave a token.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from duo_ods.config.resolve import Backup, Duo, Node
from duo_ods.errors import CommandError, NodeError
from duo_ods.hsm import custody, kek, keys
from duo_ods.keys.dnssec import keytag, make_dnskey
from duo_ods.node import daemons
from duo_ods.node.ops import enforcer
from duo_ods.node.tokenref import KEK_LABEL, TRANSPORT_LABEL, TokenRef
from duo_ods.ods import kaspdb
from duo_ods.ods.client import Enforcer
from duo_ods.ods.parse import parse_key_list_debug, parse_key_list_verbose
from duo_ods.protocol import ops as P
from duo_ods.protocol.serve import Bound, bind
from duo_ods.render.views import REPOSITORY

log = logging.getLogger(__name__)

Holder = TypeVar("Holder", Node, Backup)
RETIRE_TRANSPORT = "ods-duo-kek-retire"  # the backup token's own key for kek.retire_kek


def node_token(node: Node) -> TokenRef:
    softhsm = node.paths.softhsm_conf if node.config.softhsm else None
    return TokenRef(node.config.hsm_module, node.config.token_label, node.pin_file, softhsm)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- KEK: shared by nodes and the backup store -------------------------------------------


def kek_status(token: TokenRef, algorithm: int | None = None) -> P.KekStatusReply:
    """Whether the token holds the KEK (and its fingerprint); with `algorithm`, also whether
    the token can wrap private keys of that algorithm, so a flow can refuse before it starts."""
    with token.session() as s:
        present = kek.has_kek(s, KEK_LABEL)
        return P.KekStatusReply(
            has_kek=present,
            fingerprint=kek.kek_fingerprint(s, KEK_LABEL) if present else None,
            can_wrap=None if algorithm is None else keys.can_wrap(s, algorithm),
            retired=sorted(kek.retired_keks(s, KEK_LABEL)),
        )


def kek_transport_key(token: TokenRef) -> P.TransportKeyReply:
    """A one-time transport key; its fingerprint is what the operator confirms (`kek offer` on the
    node shows it from the token itself)."""
    with token.session() as s:
        public = kek.make_transport_key(s, TRANSPORT_LABEL)
        return P.TransportKeyReply(public=b64(public), fingerprint=kek.spki_fingerprint(public))


def pin_label(fingerprint: str) -> str:
    return f"ods-duo-pin-{fingerprint[:32]}"


def kek_generate(token: TokenRef, replace: bool) -> P.KekGenerateReply:
    """Backup token only: make the KEK; with `replace`, the old one is retired (unwrap only) first,
    so every bundle wrapped under it still opens."""
    retired = None
    if replace:
        with token.session() as s:
            present = kek.has_kek(s, KEK_LABEL)
            spki = kek.make_transport_key(s, RETIRE_TRANSPORT, holder=True) if present else None
        if spki is not None:
            fingerprint = kek.spki_fingerprint(spki)  # read from this very token: no wire involved
            with token.so_session() as so:
                if not any(k.fingerprint == fingerprint for k in kek.trusted_transport_keys(so)):
                    kek.import_trusted_transport_key(so, pin_label(fingerprint), spki, fingerprint)
            with token.session() as s:
                retired = kek.retire_kek(s, KEK_LABEL, RETIRE_TRANSPORT, pin_label(fingerprint))
        # Also what a run killed after retiring (before this cleanup) left: its own transport key and
        # the SO's pin of it, so no trusted key outlives the retirement.
        _drop_retire_transport(token)
    with token.session() as s:
        if kek.has_kek(s, KEK_LABEL):
            raise NodeError(f"token {token.label} holds a KEK already")
        kek.generate_kek(s, KEK_LABEL)
        return P.KekGenerateReply(fingerprint=kek.kek_fingerprint(s, KEK_LABEL), retired=retired)


def _drop_retire_transport(token: TokenRef) -> None:
    """The backup token's own retire transport key and its pin, if a retirement left them."""
    with token.session() as s:
        if kek.has_transport_key(s, RETIRE_TRANSPORT):
            label = pin_label(kek.spki_fingerprint(kek.transport_public_key(s, RETIRE_TRANSPORT)))
            kek.delete_trusted_transport_key(s, label)
        kek.delete_transport_key(s, RETIRE_TRANSPORT)


def kek_pin(token: TokenRef, public: str, fingerprint: str) -> P.LabelReply:
    """The backup token's SO pins a receiver's transport key whose fingerprint the operator confirmed.

    Idempotent: a pin of this very key left by a killed hand-over is kept (the same confirmed
    fingerprint; import_trusted_transport_key checked it when it was made)."""
    with token.session() as s:
        if any(k.label == pin_label(fingerprint) and k.fingerprint == fingerprint
               for k in kek.trusted_transport_keys(s)):  # fmt: skip
            return P.LabelReply(label=pin_label(fingerprint))
    with token.so_session() as so:
        pinned = kek.import_trusted_transport_key(so, pin_label(fingerprint), unb64(public), fingerprint)
    return P.LabelReply(label=pinned.label)


def kek_unpin(token: TokenRef, fingerprint: str) -> P.CountReply:
    with token.session() as s:
        return P.CountReply(count=kek.delete_trusted_transport_key(s, pin_label(fingerprint)))


def kek_wrap_for(token: TokenRef, public: str, retired: str | None = None) -> P.BlobReply:
    """The KEK (or, with `retired`, the retired KEK of that fingerprint) wrapped to a pinned transport key.

    Selects an SO-pinned key only: a key from the wire alone is refused by kek.wrap_kek_for. A
    retired KEK is unwrap only but still extractable to trusted keys (retire_kek), so a node being
    restored can open bundles made under it."""
    with token.session() as s:
        label = KEK_LABEL
        if retired is not None:
            found = kek.retired_keks(s, KEK_LABEL).get(retired)
            if found is None:
                raise NodeError(f"token {token.label} holds no retired KEK {retired}")
            label = found
        return P.BlobReply(blob=b64(kek.wrap_kek_for(s, label, unb64(public))))


def kek_unwrap(token: TokenRef, blob: str, replace: bool, retired: str | None = None) -> P.FingerprintReply:
    """Store the KEK sent to this token's transport key; with `retired`, store it as that retired KEK
    (unwrap only, sealed), beside the current one. A retired KEK cannot be fingerprinted (that needs
    CKA_WRAP): the reply repeats the asked fingerprint, and the RFC 3394 integrity check of every
    bundle unwrapped with it proves it is that key (a wrong one opens none)."""
    with token.session() as s:
        try:
            if retired is not None:
                label = kek.retired_label(KEK_LABEL, retired)
                if not kek.has_kek(s, label):  # idempotent: a rerun of a killed restore
                    kek.unwrap_kek(s, unb64(blob), TRANSPORT_LABEL, label, wrap=False)
                return P.FingerprintReply(fingerprint=retired)
            if kek.has_kek(s, KEK_LABEL) and replace:
                kek.delete_kek(s, KEK_LABEL)
            kek.unwrap_kek(s, unb64(blob), TRANSPORT_LABEL, KEK_LABEL)
        finally:
            kek.delete_transport_key(s, TRANSPORT_LABEL)  # single use, also when the unwrap failed
        return P.FingerprintReply(fingerprint=kek.kek_fingerprint(s, KEK_LABEL))


def kek_drop_retired(token: TokenRef) -> P.CountReply:
    """A node's retired KEKs go once a restore unwrapped the bundles made under them."""
    with token.session() as s:
        return P.CountReply(count=kek.drop_retired_keks(s, KEK_LABEL))


def hsm_custody(token: TokenRef, holder: bool) -> P.CustodyReply:
    """Every object in the token with its custody attributes, and what is wrong with them."""
    with token.session() as s:
        report = custody.custody_report(s, KEK_LABEL)
    return P.CustodyReply(
        objects=[P.CustodyObject.model_validate(e.to_json()) for e in report],
        problems=custody.custody_problems(report, holder=holder),
    )


def kek_handlers(token_of: Callable[[Holder], TokenRef], *, backup: bool) -> list[Bound[Any, Any, Holder]]:
    """The KEK operations of a holder whose token `token_of` gives. Only the backup token (`backup`)
    makes the KEK and hands it on."""
    handlers: list[Bound[Any, Any, Holder]] = [
        bind(P.KEK_STATUS, lambda duo, t, r: kek_status(token_of(t), r.algorithm)),
        bind(P.KEK_TRANSPORT_KEY, lambda duo, t, r: kek_transport_key(token_of(t))),
        bind(P.KEK_UNWRAP, lambda duo, t, r: kek_unwrap(token_of(t), r.blob, r.replace, r.retired)),
        bind(P.HSM_CUSTODY, lambda duo, t, r: hsm_custody(token_of(t), backup)),
    ]
    if not backup:  # the backup keeps its retired KEKs while it keeps bundles made under them
        handlers.append(bind(P.KEK_DROP_RETIRED, lambda duo, t, r: kek_drop_retired(token_of(t))))
    if backup:
        handlers += [
            bind(P.KEK_GENERATE, lambda duo, t, r: kek_generate(token_of(t), r.replace)),
            bind(P.KEK_PIN, lambda duo, t, r: kek_pin(token_of(t), r.public, r.fingerprint)),
            bind(P.KEK_UNPIN, lambda duo, t, r: kek_unpin(token_of(t), r.fingerprint)),
            bind(P.KEK_WRAP_FOR, lambda duo, t, r: kek_wrap_for(token_of(t), r.public, r.retired)),
        ]
    return handlers


# --- Key pairs in the node's HSM ----------------------------------------------------------


def op_key_generate(duo: Duo, node: Node, req: P.KeyGenerateRequest) -> P.KeyGenerateReply:
    with node_token(node).session() as s:
        key = keys.generate_keypair(s, req.algorithm, req.bits, locator=req.locator)
        public = b64(keys.dnskey_public(s, key.locator))
        return P.KeyGenerateReply(locator=key.locator, bits=key.bits, public=public)


def op_key_wrap(duo: Duo, node: Node, req: P.LocatorRequest) -> P.KeyWrapReply:
    with node_token(node).session() as s:
        wrapped = keys.wrap_private(s, req.locator, KEK_LABEL)
        return P.KeyWrapReply(wrapped=b64(wrapped), kek=kek.kek_fingerprint(s, KEK_LABEL))


def op_key_unwrap(duo: Duo, node: Node, req: P.KeyUnwrapRequest) -> P.KeyUnwrapReply:
    key = keys.HsmKey(req.locator, req.algorithm, req.bits)
    public = unb64(req.public)
    with node_token(node).session() as s:
        # a bundle made before `kek init --replace` opens with the retired KEK a restore handed over
        label = kek.kek_label_for(s, KEK_LABEL, req.kek)
        created = keys.unwrap_private(s, unb64(req.wrapped), label, key, public)
        # Confirm from the token itself, not from our own return value.
        confirmed = keys.dnskey_public(s, key.locator) == public
    if not confirmed:
        raise NodeError(f"node {node.name}: key {key.locator} is not in the token after unwrap")
    return P.KeyUnwrapReply(created=created, confirmed=confirmed)


def op_key_seal(duo: Duo, node: Node, req: P.LocatorRequest) -> P.KeySealReply:
    """After the peers and the backup confirmed a key: no more wrapping of it, ever."""
    with node_token(node).session() as s:
        sealed_now = keys.seal_key(s, req.locator)
        return P.KeySealReply(sealed_now=sealed_now, sealed=keys.is_sealed(s, req.locator))


def op_key_public(duo: Duo, node: Node, req: P.LocatorRequest) -> P.KeyPublicReply:
    with node_token(node).session() as s:
        if not keys.has_key(s, req.locator):
            return P.KeyPublicReply(present=False, public=None)
        return P.KeyPublicReply(present=True, public=b64(keys.dnskey_public(s, req.locator)))


def op_key_delete(duo: Duo, node: Node, req: P.LocatorRequest) -> P.KeyDeleteReply:
    with node_token(node).session() as s:
        return P.KeyDeleteReply(deleted=keys.delete_key(s, req.locator))


# Batches: one token session (one login) per request, however many keys (keys.flow's key create),
# and the token's objects read once per request (keys.index_objects: SoftHSM's find scans them all).


def op_key_generate_batch(duo: Duo, node: Node, req: P.KeyGenerateBatchRequest) -> P.KeyGenerateBatchReply:
    made = []
    with node_token(node).session() as s:
        keys.index_objects(s)
        for r in req.keys:
            key = keys.generate_keypair(s, r.algorithm, r.bits, locator=r.locator)
            public = b64(keys.dnskey_public(s, key.locator))
            made.append(P.KeyGenerateReply(locator=key.locator, bits=key.bits, public=public))
    return P.KeyGenerateBatchReply(keys=made)


def op_key_wrap_batch(duo: Duo, node: Node, req: P.LocatorsRequest) -> P.KeyWrapBatchReply:
    with node_token(node).session() as s:
        fingerprint = kek.kek_fingerprint(s, KEK_LABEL)
        keys.index_objects(s)
        wrapped = [
            P.KeyWrapReply(wrapped=b64(keys.wrap_private(s, locator, KEK_LABEL)), kek=fingerprint)
            for locator in req.locators
        ]
    return P.KeyWrapBatchReply(keys=wrapped)


def op_key_unwrap_batch(duo: Duo, node: Node, req: P.KeyUnwrapBatchRequest) -> P.KeyUnwrapBatchReply:
    done = []
    labels: dict[str | None, str] = {}  # KEK fingerprint -> label, looked up once per request
    with node_token(node).session() as s:
        for fingerprint in {r.kek for r in req.keys}:  # as op_key_unwrap: a retired KEK's bundle
            labels[fingerprint] = kek.kek_label_for(s, KEK_LABEL, fingerprint)
        keys.index_objects(s)
        for r in req.keys:
            key = keys.HsmKey(r.locator, r.algorithm, r.bits)
            public = unb64(r.public)
            label = labels[r.kek]
            created = keys.unwrap_private(s, unb64(r.wrapped), label, key, public)
            # Confirm from the token itself, not from our own return value.
            if keys.dnskey_public(s, key.locator) != public:
                raise NodeError(f"node {node.name}: key {key.locator} is not in the token after unwrap")
            done.append(P.KeyUnwrapReply(created=created, confirmed=True))
    return P.KeyUnwrapBatchReply(keys=done)


def op_key_seal_batch(duo: Duo, node: Node, req: P.LocatorsRequest) -> P.KeySealBatchReply:
    sealed = []
    with node_token(node).session() as s:
        keys.index_objects(s)
        for locator in req.locators:
            sealed_now = keys.seal_key(s, locator)
            sealed.append(P.KeySealReply(sealed_now=sealed_now, sealed=keys.is_sealed(s, locator)))
    return P.KeySealBatchReply(keys=sealed)


def op_hsm_list(duo: Duo, node: Node, req: P.Empty) -> P.HsmListReply:
    with node_token(node).session() as s:
        return P.HsmListReply(keys=[P.HsmObject.model_validate(k.__dict__) for k in keys.list_keys(s)])


# --- The node's enforcer ------------------------------------------------------------------


def inception_text(epoch: int) -> str:
    """`key import --inception_time` is read in the daemon's local time: format the shared
    instant in this node's local time so every node records the same moment."""
    return time.strftime("%Y-%m-%d-%H:%M:%S", time.localtime(epoch))


def op_key_import(duo: Duo, node: Node, req: P.KeyImportRequest) -> P.KeyImportReply:
    """Give the enforcer a key the HSM holds. Idempotent: a key it has is not imported twice."""
    client = enforcer(node)
    listed = client("key", "list", "-v", "-a", "-z", req.zone)
    if req.locator in {k.locator for k in parse_key_list_verbose(listed)}:
        return P.KeyImportReply(imported=False)
    _import(node, client, req)
    return P.KeyImportReply(imported=True)


def _import(node: Node, client: Enforcer, req: P.KeyImportRequest) -> None:
    if kaspdb.release_stale(node.paths.kasp_db, req.locator):  # a zone's key before its removal
        log.info("node %s: key %s, released by a deleted zone, imported again", node.name, req.locator)
    client(
        "key", "import", "--cka_id", req.locator, "--repository", REPOSITORY, "--zone", req.zone,
        "--bits", str(req.bits), "--algorithm", str(req.algorithm),
        "--keystate", "generate", "--keytype", req.role,
        "--inception_time", inception_text(req.inception),
    )  # fmt: skip


def op_key_import_batch(duo: Duo, node: Node, req: P.KeyImportBatchRequest) -> P.KeyImportBatchReply:
    """Many `key import`s in one transaction, idempotent like op_key_import: the rows the command
    writes, written directly (kaspdb.import_keys says why), once this node's HSM has shown it holds
    each key, as the command checks; the key tag comes from the token's public key, as there."""
    new = []
    with node_token(node).session() as s:
        keys.index_objects(s)
        for r in req.keys:
            if not keys.has_key(s, r.locator):
                raise NodeError(f"node {node.name}: key {r.locator} (zone {r.zone}) is not in its HSM")
            public = keys.dnskey_public(s, r.locator)
            tag = keytag(make_dnskey(r.role, r.algorithm, public))
            new.append(
                kaspdb.NewKey(r.zone, r.locator, r.role, r.algorithm, r.bits, r.inception, tag, REPOSITORY)
            )
    return P.KeyImportBatchReply(imported=kaspdb.import_keys(node.paths.kasp_db, new))


def op_enforce(duo: Duo, node: Node, req: P.Empty) -> P.Empty:
    enforcer(node)("enforce")
    return P.Empty()


def op_key_list(duo: Duo, node: Node, req: P.KeyListRequest) -> P.KeyListReply:
    client = enforcer(node)
    args = ["-a", *(["-z", req.zone] if req.zone else [])]
    try:
        verbose = parse_key_list_verbose(client("key", "list", "-v", *args))
        debug = {k.locator: k for k in parse_key_list_debug(client("key", "list", "-d", *args))}
    except CommandError as exc:
        if "not found" in (exc.stderr + exc.stdout):
            raise NodeError(f"node {node.name}: zone {req.zone} not found") from None
        raise
    rows = []
    for k in verbose:
        d = debug.get(k.locator)
        records = None if d is None else P.KeyRecords(
            ds=d.ds, dnskey=d.dnskey, rrsig_dnskey=d.rrsig_dnskey, rrsig=d.rrsig,
            published=d.published, active=d.active,
        )  # fmt: skip
        rows.append(
            P.EnforcerKeyMsg(
                zone=k.zone, role=k.role, state=k.state, next=k.next_transition, bits=k.bits,
                algorithm=k.algorithm, locator=k.locator, keytag=k.keytag, records=records,
            )
        )  # fmt: skip
    return P.KeyListReply(node=node.name, keys=rows)


# --- What ODS has no command for: the spare-key pool, and reading key states -------------


def op_db_schema(duo: Duo, node: Node, req: P.Empty) -> P.DbSchemaReply:
    """Refuses a database this code cannot write to; lists the keys waiting in the spare-key pool."""
    return P.DbSchemaReply(schema_version=kaspdb.SCHEMA_VERSION, pool=kaspdb.pool_keys(node.paths.kasp_db))


def op_key_pool_add(duo: Duo, node: Node, req: P.KeyPoolAddRequest) -> P.AddedReply:
    added = kaspdb.pool_add(
        node.paths.kasp_db, policy=duo.config.policy.name, locator=req.locator, role=req.role,
        algorithm=req.algorithm, bits=req.bits, inception=req.inception, repository=REPOSITORY,
    )  # fmt: skip
    return P.AddedReply(added=added)


def op_key_pool_remove(duo: Duo, node: Node, req: P.LocatorRequest) -> P.RemovedReply:
    return P.RemovedReply(removed=kaspdb.pool_remove(node.paths.kasp_db, req.locator))


def op_key_states(duo: Duo, node: Node, req: P.KeyStatesRequest) -> P.KeyStatesReply:
    """The enforcer's state of every key, read from its database (so also while it is stopped)."""
    zones = kaspdb.read_states(node.paths.kasp_db, req.zone)
    return P.KeyStatesReply(node=node.name, zones=[P.ZoneStateMsg.model_validate(z.to_json()) for z in zones])


def op_key_states_write(duo: Duo, node: Node, req: P.KeyStatesWriteRequest) -> P.KeyStatesWriteReply:
    """Set the enforcer state of keys this node has imported (a restore). Only with the enforcer
    stopped: it keeps its own view of the rows while it runs."""
    if daemons.running(node, "enforcerd") is not None:
        raise NodeError(f"node {node.name}: stop its enforcer before writing key states")
    zones = [kaspdb.ZoneState.from_json(z.model_dump()) for z in req.zones]
    return P.KeyStatesWriteReply(node=node.name, keys=kaspdb.write_states(node.paths.kasp_db, zones))


def op_key_states_adopt(duo: Duo, node: Node, req: P.KeyStatesWriteRequest) -> P.KeyStatesWriteReply:
    """Set the enforcer state of keys a running node has just imported (a zone's keys reused after
    its removal, duo_ods.keys.reuse): only the enforcer stops meanwhile (it keeps its own view of
    the rows while it runs); the signer serves on. The enforcer is started again even when the
    write fails."""
    daemons.stop_enforcer(node)
    try:
        zones = [kaspdb.ZoneState.from_json(z.model_dump()) for z in req.zones]
        written = kaspdb.write_states(node.paths.kasp_db, zones)
    finally:
        daemons.start(node, only=("enforcerd",))
    return P.KeyStatesWriteReply(node=node.name, keys=written)


def op_key_rollover(duo: Duo, node: Node, req: P.KeyRolloverRequest) -> P.AtReply:
    client = enforcer(node)
    at = time.time()
    client("key", "rollover", "--zone", req.zone, "--keytype", req.role)
    return P.AtReply(node=node.name, at=at)


# dsAtParent (enforcer/src/db/key_data.h) and the commands that move a KSK's DS on:
# `ds-seen` wants it submitted and `ds-gone` retracted, so a step before them is run first.
DS_AT_PARENT = {0: "unsubmitted", 1: "submit", 2: "submitted", 3: "seen", 4: "retract", 5: "retracted"}
DS_STEPS: dict[str, dict[str, list[str]]] = {
    "seen": {"submit": ["ds-submit", "ds-seen"], "submitted": ["ds-seen"], "seen": []},
    "gone": {"retract": ["ds-retract", "ds-gone"], "retracted": ["ds-gone"], "unsubmitted": []},
}


def op_key_ds(duo: Duo, node: Node, req: P.KeyDsRequest) -> P.KeyDsReply:
    """Tell the enforcer the parent's DS for a KSK is there (seen) or gone; idempotent."""
    zone, keytag, action = req.zone, req.keytag, req.action
    ksks = [
        k for z in kaspdb.read_states(node.paths.kasp_db, zone) for k in z.keys
        if k.keytag == keytag and k.role in {"KSK", "CSK"}
    ]  # fmt: skip
    if not ksks:
        raise NodeError(f"node {node.name}: zone {zone} has no KSK with keytag {keytag}")
    ds = DS_AT_PARENT.get(ksks[0].flags["dsAtParent"], "unknown")
    steps = DS_STEPS[action].get(ds)
    if steps is None:
        raise NodeError(
            f"node {node.name}: zone {zone} key {keytag}: DS is {ds!r} here, so it cannot be marked {action}"
        )
    client = enforcer(node)
    at = time.time()
    for command in steps:
        client("key", command, "--zone", zone, "--keytag", str(keytag))
    return P.KeyDsReply(node=node.name, was=ds, ran=steps, at=at)
