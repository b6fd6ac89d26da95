"""Node-local operations: what `ods-duo node OP --node NAME` runs on the node itself.

Each takes the resolved config, the node and a JSON payload, and returns a JSON
object. Transports (local subprocess now, ssh later) carry exactly these.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from duo_ods.config.resolve import Duo, Node
from duo_ods.errors import CommandError, DuoError, NodeError
from duo_ods.node import daemons
from duo_ods.node.configs import write_zonelist
from duo_ods.node.setup import init_node
from duo_ods.node.system import init_system_node
from duo_ods.ods import kaspdb
from duo_ods.ods.client import Enforcer, Signer
from duo_ods.ods.parse import parse_zone_list
from duo_ods.render.engine import write_atomic
from duo_ods.watch.state import load_state, state_path

log = logging.getLogger(__name__)

Payload = dict[str, Any]
SIGN_TIMEOUT = 5.0  # a healthy signer takes a sign request at once
Operation = Callable[[Duo, Node, Payload], Payload]


def enforcer(node: Node) -> Enforcer:
    if daemons.running(node, "enforcerd") is None:
        raise NodeError(f"node {node.name}: enforcer is not running")
    return Enforcer(node.paths.enforcer_sock)


def op_init(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Lab nodes: make what is missing. System nodes: plan, then act unless payload["dry_run"]."""
    if node.config.layout == "system":
        return init_system_node(duo, node, dry_run=bool(payload.get("dry_run")))
    if payload.get("dry_run"):
        raise NodeError(f"node {node.name}: --dry-run needs a system-layout node; lab nodes just init")
    return init_node(duo, node)


def op_start(duo: Duo, node: Node, payload: Payload) -> Payload:
    signer_was_running = daemons.running(node, "signerd") is not None
    pids = daemons.start(node)
    if not signer_was_running:
        # A signer that was down may have missed `zone update`s: their input files are newer than
        # what it signed last. Have it read every input again.
        Signer(node.paths.signer_sock)("sign --all")
    return {"node": node.name, "pids": pids}


def op_stop(duo: Duo, node: Node, payload: Payload) -> Payload:
    return {"node": node.name, "daemons": daemons.stop(node)}


def op_status(duo: Duo, node: Node, payload: Payload) -> Payload:
    pids = daemons.status(node)
    result: Payload = {
        "node": node.name,
        "address": node.address,
        "port": node.port,
        "initialised": node.paths.conf_xml.exists(),
        "has_database": node.paths.kasp_db.exists(),
        "daemons": pids,
        "input_dir": str(node.input_dir),
        "zones": [],
    }
    if pids["enforcerd"] is not None:
        result["zones"] = [z.name for z in _zones(node)]
    return result


def op_policy_import(duo: Duo, node: Node, payload: Payload) -> Payload:
    out = enforcer(node)("policy", "import")
    return {"node": node.name, "output": out.strip()}


def _zones(node: Node) -> list[Any]:
    return parse_zone_list(enforcer(node)("zone", "list"))


def _input_digest(node: Node, zone: str) -> str | None:
    """sha256 of the signer's current input for the zone (what was last checked and stored)."""
    path = node.paths.unsigned_zone(zone)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def op_zone_list(duo: Duo, node: Node, payload: Payload) -> Payload:
    """The enforcer's zones, with what the watcher last did with each zone's input file (if it
    watches): a refused file shows here with its file:line error."""
    inputs = load_state(state_path(node.paths.state))
    zones = [
        {
            "name": z.name,
            "policy": z.policy,
            "next_change": z.next_change,
            "input_digest": _input_digest(node, z.name),
        }
        for z in _zones(node)
    ]
    for zone in zones:
        if (s := inputs.get(zone["name"])) is not None:
            zone["input"] = {"status": s.status, "message": s.message, "file": s.file}
    known = {z["name"] for z in zones}
    refused = [
        {"zone": name, "status": s.status, "message": s.message, "file": s.file}
        for name, s in sorted(inputs.items())
        if name not in known and s.status == "error"
    ]
    return {"node": node.name, "zones": zones, "refused": refused}


def op_zone_add(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Add a checked zone: store its text as the signer's input, then `zone add` in the enforcer.

    The controller has checked the text already; here we only refuse a zone the
    node has, and undo the input file if the enforcer refuses.
    """
    zone: str = payload["zone"]
    text: str = payload["text"]
    known = [z.name for z in _zones(node)]
    if zone in known:
        raise NodeError(f"node {node.name}: zone {zone} exists already")
    path = node.paths.unsigned_zone(zone)
    write_atomic(path, text, mode=0o640)
    try:
        enforcer(node)(
            "zone", "add", "--zone", zone, "--policy", duo.config.policy.name,
            "--signerconf", str(node.paths.signconf(zone)),
            "--in-type", "File", "--input", str(path),
            "--out-type", "DNS", "--output", str(node.paths.addns_xml),
        )  # fmt: skip
    except CommandError:
        path.unlink(missing_ok=True)
        raise
    write_zonelist(duo, node, [*known, zone])
    log.info("node %s: zone %s added", node.name, zone)
    return {"node": node.name, "zone": zone, "added": True}


def op_zone_add_batch(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Add many checked zones in one enforcer round trip: their input files, then zonelist.xml with
    every zone, then `zonelist import` (which adds what is new and touches nothing else)."""
    batch: list[dict[str, str]] = payload["zones"]
    known = [z.name for z in _zones(node)]
    new = [z for z in batch if z["zone"] not in known]
    for entry in new:
        write_atomic(node.paths.unsigned_zone(entry["zone"]), entry["text"], mode=0o640)
    try:
        write_zonelist(duo, node, [*known, *(z["zone"] for z in new)])
        enforcer(node)("zonelist", "import")
    except DuoError:
        for entry in new:  # the enforcer did not take them: no stray input files
            node.paths.unsigned_zone(entry["zone"]).unlink(missing_ok=True)
        write_zonelist(duo, node, known)
        raise
    now = {z.name for z in _zones(node)}
    missing = [z["zone"] for z in new if z["zone"] not in now]
    if missing:
        raise NodeError(f"node {node.name}: zonelist import did not add {', '.join(missing[:5])}")
    log.info("node %s: %d zones added", node.name, len(new))
    return {"node": node.name, "added": [z["zone"] for z in new]}


def op_zone_update(duo: Duo, node: Node, payload: Payload) -> Payload:
    """New checked data for a zone the node has: replace the signer's input, then ask it to sign.

    The input file is replaced atomically, so the signer reads the old or the new
    version, never half of one. A signer that is down reads the new file when it
    starts; that is reported, not an error.
    """
    zone: str = payload["zone"]
    if zone not in [z.name for z in _zones(node)]:
        raise NodeError(f"node {node.name}: zone {zone} is not on this node; zone add it")
    write_atomic(node.paths.unsigned_zone(zone), payload["text"], mode=0o640)
    if daemons.running(node, "signerd") is None:
        return {
            "node": node.name,
            "zone": zone,
            "signing": False,
            "note": "signer down: signs when it starts",
        }
    try:
        # Short: a hung signer must not hold up the caller; the request waits in its socket.
        # ods-signer takes `sign ZONE --serial N` only as one argument (else "too many arguments").
        serial = payload.get("serial")
        command = f"sign {zone} --serial {int(serial)}" if serial else f"sign {zone}"
        Signer(node.paths.signer_sock, timeout=SIGN_TIMEOUT)(command)
    except CommandError as exc:
        note = f"new data stored, but the signer did not take the sign request: {exc}"
        return {"node": node.name, "zone": zone, "signing": False, "note": note}
    return {"node": node.name, "zone": zone, "signing": True}


def op_state_export(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Every zone with its last good input and its keys' enforcer states, in one call (snapshots,
    restores): one round trip however many zones there are."""
    states = {z.zone: z.to_json() for z in kaspdb.read_states(node.paths.kasp_db)}
    zones = []
    for z in _zones(node):
        path = node.paths.unsigned_zone(z.name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise NodeError(f"node {node.name}: zone {z.name}: cannot read {path}: {exc.strerror}") from None
        zones.append({"zone": z.name, "text": text, "states": states.get(z.name)})
    return {"node": node.name, "zones": zones}


def op_zone_resign(duo: Duo, node: Node, payload: Payload) -> Payload:
    """Sign the zone's current input again with a given serial (serial levelling)."""
    zone, serial = payload["zone"], int(payload["serial"])
    if daemons.running(node, "signerd") is None:
        raise NodeError(f"node {node.name}: signer is not running")
    Signer(node.paths.signer_sock, timeout=SIGN_TIMEOUT)(f"sign {zone} --serial {serial}")
    return {"node": node.name, "zone": zone, "serial": serial}


def op_zone_remove(duo: Duo, node: Node, payload: Payload) -> Payload:
    zone: str = payload["zone"]
    known = [z.name for z in _zones(node)]
    if zone not in known:
        return {"node": node.name, "zone": zone, "removed": False}
    enforcer(node)("zone", "delete", "--zone", zone)
    node.paths.unsigned_zone(zone).unlink(missing_ok=True)
    write_zonelist(duo, node, [z for z in known if z != zone])
    log.info("node %s: zone %s removed", node.name, zone)
    return {"node": node.name, "zone": zone, "removed": True}


OPERATIONS: dict[str, Operation] = {
    "init": op_init,
    "start": op_start,
    "stop": op_stop,
    "status": op_status,
    "policy-import": op_policy_import,
    "zone-list": op_zone_list,
    "zone-add": op_zone_add,
    "zone-add-batch": op_zone_add_batch,
    "zone-update": op_zone_update,
    "zone-resign": op_zone_resign,
    "state-export": op_state_export,
    "zone-remove": op_zone_remove,
}
