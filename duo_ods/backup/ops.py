"""Backup-store operations, reached through the transport as the target 'backup'.

In the lab the store is a local folder; on real machines it is its own host, so
the controller talks to it the same way it talks to a node.
"""

from __future__ import annotations

from typing import Any

from duo_ods.backup.store import BackupStore
from duo_ods.config.resolve import Backup, Duo
from duo_ods.errors import DuoError
from duo_ods.hsm import keys
from duo_ods.keys.bundle import KeyBundle
from duo_ods.node.keyops import kek_ops
from duo_ods.node.secrets import ensure_secret
from duo_ods.node.token import init_token, write_softhsm_conf
from duo_ods.node.tokenref import KEK_LABEL, TokenRef

Payload = dict[str, Any]


def backup_token(backup: Backup) -> TokenRef:
    softhsm = backup.softhsm_conf if backup.config.softhsm else None
    return TokenRef(backup.config.hsm_module, backup.config.token_label, backup.pin_file, softhsm)


def op_init(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    BackupStore(backup.dir).check_writable()
    pin = ensure_secret(backup.pin_file)
    so_pin = ensure_secret(backup.secrets / "so-pin")
    created = False
    if backup.config.softhsm:
        write_softhsm_conf(backup.softhsm_conf, backup.tokens, "backup")
        created = init_token(backup.softhsm_conf, backup.config.token_label, pin, so_pin, "backup")
    return {"dir": str(backup.dir), "token_created": created}


def op_bundle_put(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    bundle = KeyBundle.from_json(payload["bundle"])
    return {"digest": BackupStore(backup.dir).put(bundle)}


def op_bundle_list(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    return {"bundles": [b.to_json() for b in BackupStore(backup.dir).list()]}


def op_bundle_remove(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    BackupStore(backup.dir).remove(payload["locator"])
    return {}


def op_bundle_verify(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    """Unwrap one bundle into the backup's own token (the verification token): it must open under
    the KEK, and the key in it must match the bundle's public key and sign with it. The copy made
    for the test is deleted again; a key the token already held is left alone."""
    bundle = BackupStore(backup.dir).get(payload["locator"])
    key = keys.HsmKey(bundle.locator, bundle.algorithm, bundle.bits)
    with backup_token(backup).session() as s:
        try:
            created = keys.unwrap_private(s, bundle.wrapped_bytes, KEK_LABEL, key, bundle.public_bytes)
        except DuoError as exc:
            return {"locator": bundle.locator, "ok": False, "problem": str(exc)}
        if created:
            keys.delete_key(s, bundle.locator)
    return {"locator": bundle.locator, "ok": True, "problem": None}


def op_snapshot_put(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    return {"path": str(BackupStore(backup.dir).put_snapshot(payload["snapshot"]))}


def op_snapshot_get(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    return {"snapshot": BackupStore(backup.dir).latest_snapshot()}


def op_dead_since(duo: Duo, backup: Backup, payload: Payload) -> Payload:
    """Read the retention ledger; with "ledger", replace it first."""
    store = BackupStore(backup.dir)
    if "ledger" in payload:
        store.save_dead_since({k: float(v) for k, v in payload["ledger"].items()})
    return {"ledger": store.dead_since()}


BACKUP_OPERATIONS: dict[str, Any] = {
    "init": op_init,
    **kek_ops(backup_token),
    "bundle-put": op_bundle_put,
    "bundle-list": op_bundle_list,
    "bundle-remove": op_bundle_remove,
    "bundle-verify": op_bundle_verify,
    "snapshot-put": op_snapshot_put,
    "snapshot-get": op_snapshot_get,
    "dead-since": op_dead_since,
}
