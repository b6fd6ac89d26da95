"""Node-local key operations: the node's HSM (keys, KEK) and its enforcer's keys.

Binary values travel base64 in the JSON payloads. Only wrapped private keys
ever leave a token.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from duo_ods.config.resolve import Duo, Node
from duo_ods.errors import CommandError, NodeError
from duo_ods.hsm import kek, keys
from duo_ods.node import daemons
from duo_ods.node.ops import Payload, enforcer
from duo_ods.node.tokenref import KEK_LABEL, TRANSPORT_LABEL, TokenRef
from duo_ods.ods import kaspdb
from duo_ods.ods.parse import parse_key_list_debug, parse_key_list_verbose
from duo_ods.render.views import REPOSITORY


def node_token(node: Node) -> TokenRef:
    softhsm = node.paths.softhsm_conf if node.config.softhsm else None
    return TokenRef(node.config.hsm_module, node.config.token_label, node.pin_file, softhsm)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- KEK: shared by nodes and the backup store -------------------------------------------


def kek_status(token: TokenRef, algorithm: int | None = None) -> Payload:
    """Whether the token holds the KEK (and its fingerprint); with `algorithm`, also whether
    the token can wrap private keys of that algorithm, so a flow can refuse before it starts."""
    with token.session() as s:
        present = kek.has_kek(s, KEK_LABEL)
        status: Payload = {
            "has_kek": present,
            "fingerprint": kek.kek_fingerprint(s, KEK_LABEL) if present else None,
        }
        if algorithm is not None:
            status["can_wrap"] = keys.can_wrap(s, algorithm)
        return status


def kek_transport_key(token: TokenRef) -> Payload:
    with token.session() as s:
        return {"public": b64(kek.make_transport_key(s, TRANSPORT_LABEL))}


def kek_generate(token: TokenRef, replace: bool) -> Payload:
    with token.session() as s:
        if kek.has_kek(s, KEK_LABEL):
            if not replace:
                raise NodeError(f"token {token.label} holds a KEK already")
            kek.delete_kek(s, KEK_LABEL)
        kek.generate_kek(s, KEK_LABEL)
        return {"fingerprint": kek.kek_fingerprint(s, KEK_LABEL)}


def kek_wrap_for(token: TokenRef, public: str) -> Payload:
    with token.session() as s:
        return {"blob": b64(kek.wrap_kek_for(s, KEK_LABEL, unb64(public)))}


def kek_unwrap(token: TokenRef, blob: str, replace: bool) -> Payload:
    with token.session() as s:
        if kek.has_kek(s, KEK_LABEL) and replace:
            kek.delete_kek(s, KEK_LABEL)
        kek.unwrap_kek(s, unb64(blob), TRANSPORT_LABEL, KEK_LABEL)
        kek.delete_transport_key(s, TRANSPORT_LABEL)  # single use
        return {"fingerprint": kek.kek_fingerprint(s, KEK_LABEL)}


def kek_ops(token_of: Any) -> dict[str, Any]:
    """The KEK operations for a target whose token `token_of(target)` gives."""
    return {
        "kek-status": lambda duo, t, p: kek_status(token_of(t), p.get("algorithm")),
        "kek-transport-key": lambda duo, t, p: kek_transport_key(token_of(t)),
        "kek-generate": lambda duo, t, p: kek_generate(token_of(t), bool(p.get("replace"))),
        "kek-wrap-for": lambda duo, t, p: kek_wrap_for(token_of(t), p["public"]),
        "kek-unwrap": lambda duo, t, p: kek_unwrap(token_of(t), p["blob"], bool(p.get("replace"))),
    }


# --- Key pairs in the node's HSM ----------------------------------------------------------


def op_key_generate(duo: Duo, node: Node, payload: Payload) -> Payload:
    with node_token(node).session() as s:
        key = keys.generate_keypair(s, int(payload["algorithm"]), int(payload["bits"]))
        return {"locator": key.locator, "bits": key.bits, "public": b64(keys.dnskey_public(s, key.locator))}


def op_key_wrap(duo: Duo, node: Node, payload: Payload) -> Payload:
    with node_token(node).session() as s:
        wrapped = keys.wrap_private(s, payload["locator"], KEK_LABEL)
        return {"wrapped": b64(wrapped), "kek": kek.kek_fingerprint(s, KEK_LABEL)}


def op_key_unwrap(duo: Duo, node: Node, payload: Payload) -> Payload:
    key = keys.HsmKey(payload["locator"], int(payload["algorithm"]), int(payload["bits"]))
    with node_token(node).session() as s:
        created = keys.unwrap_private(s, unb64(payload["wrapped"]), KEK_LABEL, key, unb64(payload["public"]))
        # Confirm from the token itself, not from our own return value.
        confirmed = keys.dnskey_public(s, key.locator) == unb64(payload["public"])
    if not confirmed:
        raise NodeError(f"node {node.name}: key {key.locator} is not in the token after unwrap")
    return {"created": created, "confirmed": confirmed}


def op_key_public(duo: Duo, node: Node, payload: Payload) -> Payload:
    with node_token(node).session() as s:
        if not keys.has_key(s, payload["locator"]):
            return {"present": False, "public": None}
        return {"present": True, "public": b64(keys.dnskey_public(s, payload["locator"]))}


def op_key_delete(duo: Duo, node: Node, payload: Payload) -> Payload:
    with node_token(node).session() as s:
        return {"deleted": keys.delete_key(s, payload["locator"])}


def op_hsm_list(duo: Duo, node: Node, payload: Payload) -> Payload:
    with node_token(node).session() as s:
        return {"keys": [k.__dict__ for k in keys.list_keys(s)]}


# --- The node's enforcer ------------------------------------------------------------------


def inception_text(epoch: int) -> str:
    """`key import --inception_time` is read in the daemon's local time: format the shared
    instant in this node's local time so every node records the same moment."""
    return time.strftime("%Y-%m-%d-%H:%M:%S", time.localtime(epoch))


def op_key_import(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Give the enforcer a key the HSM holds. Idempotent: a key it has is not imported twice."""
    zone, locator = payload["zone"], payload["locator"]
    client = enforcer(node)
    present = {k.locator for k in parse_key_list_verbose(client("key", "list", "-v", "-a", "-z", zone))}
    if locator in present:
        return {"imported": False}
    client(
        "key", "import", "--cka_id", locator, "--repository", REPOSITORY, "--zone", zone,
        "--bits", str(payload["bits"]), "--algorithm", str(payload["algorithm"]),
        "--keystate", "generate", "--keytype", payload["role"],
        "--inception_time", inception_text(int(payload["inception"])),
    )  # fmt: skip
    return {"imported": True}


def op_enforce(duo: Duo, node: Node, payload: Payload) -> Payload:
    enforcer(node)("enforce")
    return {}


def op_key_list(duo: Duo, node: Node, payload: Payload) -> Payload:
    client = enforcer(node)
    args = ["-a", *(["-z", payload["zone"]] if payload.get("zone") else [])]
    try:
        verbose = parse_key_list_verbose(client("key", "list", "-v", *args))
        debug = {k.locator: k for k in parse_key_list_debug(client("key", "list", "-d", *args))}
    except CommandError as exc:
        if "not found" in (exc.stderr + exc.stdout):
            raise NodeError(f"node {node.name}: zone {payload.get('zone')} not found") from None
        raise
    rows = []
    for k in verbose:
        d = debug.get(k.locator)
        rows.append(
            {
                "zone": k.zone, "role": k.role, "state": k.state, "next": k.next_transition,
                "bits": k.bits, "algorithm": k.algorithm, "locator": k.locator, "keytag": k.keytag,
                "records": None if d is None else {
                    "ds": d.ds, "dnskey": d.dnskey, "rrsig_dnskey": d.rrsig_dnskey, "rrsig": d.rrsig,
                    "published": d.published, "active": d.active,
                },
            }
        )  # fmt: skip
    return {"node": node.name, "keys": rows}


# --- What ODS has no command for: the spare-key pool, and reading key states -------------


def op_db_schema(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Refuses a database this code cannot write to; lists the keys waiting in the spare-key pool."""
    return {"schema": kaspdb.SCHEMA_VERSION, "pool": kaspdb.pool_keys(node.paths.kasp_db)}


def op_key_pool_add(duo: Duo, node: Node, payload: Payload) -> Payload:
    added = kaspdb.pool_add(
        node.paths.kasp_db, policy=duo.config.policy.name, locator=payload["locator"], role=payload["role"],
        algorithm=int(payload["algorithm"]), bits=int(payload["bits"]), inception=int(payload["inception"]),
        repository=REPOSITORY,
    )  # fmt: skip
    return {"added": added}


def op_key_pool_remove(duo: Duo, node: Node, payload: Payload) -> Payload:
    return {"removed": kaspdb.pool_remove(node.paths.kasp_db, payload["locator"])}


def op_key_states(duo: Duo, node: Node, payload: Payload) -> Payload:
    """The enforcer's state of every key, read from its database (so also while it is stopped)."""
    zones = kaspdb.read_states(node.paths.kasp_db, payload.get("zone"))
    return {"node": node.name, "zones": [z.to_json() for z in zones]}


def op_key_states_write(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Set the enforcer state of keys this node has imported (a restore). Only with the enforcer
    stopped: it keeps its own view of the rows while it runs."""
    if daemons.running(node, "enforcerd") is not None:
        raise NodeError(f"node {node.name}: stop its enforcer before writing key states")
    zones = [kaspdb.ZoneState.from_json(z) for z in payload["zones"]]
    return {"node": node.name, "keys": kaspdb.write_states(node.paths.kasp_db, zones)}


def op_key_rollover(duo: Duo, node: Node, payload: Payload) -> Payload:
    client = enforcer(node)
    at = time.time()
    client("key", "rollover", "--zone", payload["zone"], "--keytype", payload["role"])
    return {"node": node.name, "at": at}


# dsAtParent (enforcer/src/db/key_data.h) and the commands that move a KSK's DS on:
# `ds-seen` wants it submitted and `ds-gone` retracted, so a step before them is run first.
DS_AT_PARENT = {0: "unsubmitted", 1: "submit", 2: "submitted", 3: "seen", 4: "retract", 5: "retracted"}
DS_STEPS: dict[str, dict[str, list[str]]] = {
    "seen": {"submit": ["ds-submit", "ds-seen"], "submitted": ["ds-seen"], "seen": []},
    "gone": {"retract": ["ds-retract", "ds-gone"], "retracted": ["ds-gone"], "unsubmitted": []},
}


def op_key_ds(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Tell the enforcer the parent's DS for a KSK is there (seen) or gone; idempotent."""
    zone, keytag, action = payload["zone"], int(payload["keytag"]), payload["action"]
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
    return {"node": node.name, "was": ds, "ran": steps, "at": at}


KEY_OPERATIONS: dict[str, Any] = {
    **kek_ops(node_token),
    "key-generate": op_key_generate,
    "key-wrap": op_key_wrap,
    "key-unwrap": op_key_unwrap,
    "key-public": op_key_public,
    "key-delete": op_key_delete,
    "hsm-list": op_hsm_list,
    "key-import": op_key_import,
    "enforce": op_enforce,
    "key-list": op_key_list,
    "db-schema": op_db_schema,
    "key-pool-add": op_key_pool_add,
    "key-pool-remove": op_key_pool_remove,
    "key-states": op_key_states,
    "key-rollover": op_key_rollover,
    "key-states-write": op_key_states_write,
    "key-ds": op_key_ds,
}
