"""Backup-store operations, reached through the protocol as the target 'backup'.

In the lab the store is a local folder; on real machines it is its own host, so
the controller talks to it the same way it talks to a node.
"""

from __future__ import annotations

from typing import Any

from duo_ods.backup.store import BackupStore
from duo_ods.config.resolve import Backup, Duo
from duo_ods.errors import DuoError
from duo_ods.hsm import kek, keys
from duo_ods.keys.bundle import KeyBundle
from duo_ods.node.keyops import kek_handlers
from duo_ods.node.secrets import ensure_secret
from duo_ods.node.token import init_token, write_softhsm_conf
from duo_ods.node.tokenref import KEK_LABEL, TokenRef
from duo_ods.protocol import ops as P
from duo_ods.protocol.serve import Bound, bind, handlers


def backup_token(backup: Backup) -> TokenRef:
    """The backup token, with its SO PIN: its SO pins the transport keys the KEK may go to."""
    softhsm = backup.softhsm_conf if backup.config.softhsm else None
    return TokenRef(
        backup.config.hsm_module,
        backup.config.token_label,
        backup.pin_file,
        softhsm,
        backup.secrets / "so-pin",
    )


def bundle_of(msg: P.Bundle) -> KeyBundle:
    return KeyBundle(**msg.model_dump())


def bundle_msg(bundle: KeyBundle) -> P.Bundle:
    return P.Bundle.model_validate(bundle.__dict__)


def op_init(duo: Duo, backup: Backup, req: P.Empty) -> P.BackupInitReply:
    BackupStore(backup.dir).check_writable()
    pin = ensure_secret(backup.pin_file)
    so_pin = ensure_secret(backup.secrets / "so-pin")
    created = False
    if backup.config.softhsm:
        write_softhsm_conf(backup.softhsm_conf, backup.tokens, "backup")
        created = init_token(backup.softhsm_conf, backup.config.token_label, pin, so_pin, "backup")
    return P.BackupInitReply(dir=str(backup.dir), token_created=created)


def op_bundle_put(duo: Duo, backup: Backup, req: P.BundleRequest) -> P.DigestReply:
    return P.DigestReply(digest=BackupStore(backup.dir).put(bundle_of(req.bundle)))


def op_bundle_put_batch(duo: Duo, backup: Backup, req: P.BundleBatchRequest) -> P.DigestsReply:
    store = BackupStore(backup.dir)
    return P.DigestsReply(digests=[store.put(bundle_of(b)) for b in req.bundles])


def op_bundle_list(duo: Duo, backup: Backup, req: P.Empty) -> P.BundleListReply:
    return P.BundleListReply(bundles=[bundle_msg(b) for b in BackupStore(backup.dir).list()])


def op_bundle_remove(duo: Duo, backup: Backup, req: P.LocatorRequest) -> P.Empty:
    BackupStore(backup.dir).remove(req.locator)
    return P.Empty()


def op_bundle_verify(duo: Duo, backup: Backup, req: P.LocatorRequest) -> P.BundleVerifyReply:
    """Unwrap one bundle into the backup's own token (the verification token): it must open under
    the KEK, and the key in it must match the bundle's public key and sign with it. The copy made
    for the test is deleted again; a key the token already held is left alone."""
    bundle = BackupStore(backup.dir).get(req.locator)
    key = keys.HsmKey(bundle.locator, bundle.algorithm, bundle.bits)
    with backup_token(backup).session() as s:
        label = KEK_LABEL
        if kek.kek_fingerprint(s, KEK_LABEL) != bundle.kek:  # a bundle from before `kek init --replace`
            label = kek.retired_keks(s, KEK_LABEL).get(bundle.kek, KEK_LABEL)
        try:
            created = keys.unwrap_private(s, bundle.wrapped_bytes, label, key, bundle.public_bytes)
        except DuoError as exc:
            return P.BundleVerifyReply(locator=bundle.locator, ok=False, problem=str(exc))
        if created:
            keys.delete_key(s, bundle.locator)
    return P.BundleVerifyReply(locator=bundle.locator, ok=True, problem=None)


def op_snapshot_put(duo: Duo, backup: Backup, req: P.SnapshotPutRequest) -> P.PathReply:
    return P.PathReply(path=str(BackupStore(backup.dir).put_snapshot(req.snapshot.model_dump(mode="json"))))


def op_snapshot_get(duo: Duo, backup: Backup, req: P.Empty) -> P.SnapshotGetReply:
    latest = BackupStore(backup.dir).latest_snapshot()
    return P.SnapshotGetReply(snapshot=None if latest is None else P.Snapshot.model_validate(latest))


def op_dead_since(duo: Duo, backup: Backup, req: P.DeadSinceRequest) -> P.LedgerReply:
    """Read the retention ledger; with a ledger in the request, replace it first."""
    store = BackupStore(backup.dir)
    if req.ledger is not None:
        store.save_dead_since(req.ledger)
    return P.LedgerReply(ledger=store.dead_since())


def op_verify_record(duo: Duo, backup: Backup, req: P.VerifyRecordRequest) -> P.VerifyRecordReply:
    """Read the last `backup verify`'s result; with a record in the request, save it first."""
    store = BackupStore(backup.dir)
    if req.record is not None:
        store.save_verify(req.record.model_dump())
    last = store.last_verify()
    return P.VerifyRecordReply(last=None if last is None else P.VerifyResult.model_validate(last))


BACKUP_HANDLERS: dict[str, Bound[Any, Any, Backup]] = handlers(
    bind(P.BACKUP_INIT, op_init),
    *kek_handlers(backup_token, backup=True),
    bind(P.BUNDLE_PUT, op_bundle_put),
    bind(P.BUNDLE_PUT_BATCH, op_bundle_put_batch),
    bind(P.BUNDLE_LIST, op_bundle_list),
    bind(P.BUNDLE_REMOVE, op_bundle_remove),
    bind(P.BUNDLE_VERIFY, op_bundle_verify),
    bind(P.SNAPSHOT_PUT, op_snapshot_put),
    bind(P.SNAPSHOT_GET, op_snapshot_get),
    bind(P.VERIFY_RECORD, op_verify_record),
    bind(P.DEAD_SINCE, op_dead_since),
)
