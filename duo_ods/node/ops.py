"""Node-local operations: what `ods-duo node op OP --node NAME` runs on the node itself.

Each takes the resolved config, the node and its operation's request type (validated
already, see duo_ods.protocol), and returns its reply type.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path

from duo_ods.config.resolve import Duo, Node, zone_file_name
from duo_ods.errors import CommandError, DuoError, NodeError
from duo_ods.node import daemons
from duo_ods.node.configs import write_zonelist
from duo_ods.node.setup import init_node, zonelist_zones
from duo_ods.node.system import init_system_node
from duo_ods.ods import kaspdb
from duo_ods.ods.client import Enforcer, Signer
from duo_ods.ods.parse import EnforcerZone, parse_zone_list
from duo_ods.protocol import ops as P
from duo_ods.relay.sync import sync_relay
from duo_ods.render.engine import write_atomic
from duo_ods.watch.state import load_state, state_path
from duo_ods.zones.validate import verify_zone_text, zone_name_from_filename

log = logging.getLogger(__name__)

SIGN_TIMEOUT = 5.0  # a healthy signer takes a sign request at once


def enforcer(node: Node) -> Enforcer:
    if daemons.running(node, "enforcerd") is None:
        raise NodeError(f"node {node.name}: enforcer is not running")
    return Enforcer(node.paths.enforcer_sock)


def op_init(duo: Duo, node: Node, req: P.InitRequest) -> P.InitReply:
    """Lab nodes: make what is missing. System nodes: plan, then act unless req.dry_run."""
    if node.config.layout == "system":
        return P.InitReply.model_validate(init_system_node(duo, node, dry_run=req.dry_run))
    if req.dry_run:
        raise NodeError(f"node {node.name}: --dry-run needs a system-layout node; lab nodes just init")
    return P.InitReply.model_validate({"layout": "lab", **init_node(duo, node)})


def op_start(duo: Duo, node: Node, req: P.Empty) -> P.StartReply:
    """Start the daemons, and nothing more. A started ods-signerd serves what it signed last (it
    does not read its inputs again by itself: measured). It is NOT asked to read them here: it
    would sign a changed input at a serial of its own, which may repeat a serial the other signer
    served with other content (the randomised test found that). The controller's node start
    (zones.catchup.start_node) signs each zone whose input changed while it was down, at a serial
    chosen from every copy."""
    return P.StartReply(node=node.name, pids=daemons.start(node))


def op_stop(duo: Duo, node: Node, req: P.Empty) -> P.StopReply:
    return P.StopReply(node=node.name, daemons=daemons.stop(node))


def op_status(duo: Duo, node: Node, req: P.Empty) -> P.StatusReply:
    pids = daemons.status(node)
    return P.StatusReply(
        node=node.name,
        address=node.address,
        port=node.port,
        initialised=node.paths.conf_xml.exists(),
        has_database=node.paths.kasp_db.exists(),
        daemons=pids,
        input_dir=str(node.input_dir),
        zones=[z.name for z in _zones(node)] if pids["enforcerd"] is not None else [],
    )


def op_policy_import(duo: Duo, node: Node, req: P.Empty) -> P.OutputReply:
    out = enforcer(node)("policy", "import")
    return P.OutputReply(node=node.name, output=out.strip())


def _zones(node: Node) -> list[EnforcerZone]:
    return parse_zone_list(enforcer(node)("zone", "list"))


def _zone_names(node: Node) -> list[str]:
    """The node's zones: the enforcer's when it runs, else its zonelist.xml (kept equal to them)."""
    if daemons.running(node, "enforcerd") is not None:
        return [z.name for z in _zones(node)]
    return zonelist_zones(node)


def op_input_state(duo: Duo, node: Node, req: P.InputStateRequest) -> P.InputStateReply:
    """The signer's input file of every zone (or one), and that zone's files in the watched input
    directory. Read from files only: a node whose daemons are down answers too (catch-up before
    start, `zone remove`)."""
    names = _zone_names(node)
    if req.zone is not None:
        names = [z for z in names if z == req.zone]
    zones = []
    for name in names:
        path = node.paths.unsigned_zone(name)
        try:
            data, mtime = path.read_bytes(), path.stat().st_mtime
        except FileNotFoundError:
            zones.append(P.NodeInput(zone=name, digest=None, mtime=None))
            continue
        except OSError as exc:
            raise NodeError(f"node {node.name}: zone {name}: cannot read {path}: {exc.strerror}") from None
        digest = hashlib.sha256(data).hexdigest()
        pending = _pending(node, name).exists()
        zones.append(P.NodeInput(zone=name, digest=digest, mtime=mtime, pending=pending))
    watched: list[str] = []
    if req.zone is not None and node.input_dir.is_dir():
        watched = sorted(
            str(p) for p in node.input_dir.iterdir()
            if p.is_file() and zone_name_from_filename(p.name) == req.zone
        )  # fmt: skip
    return P.InputStateReply(
        node=node.name,
        enforcer=daemons.running(node, "enforcerd") is not None,
        signer=daemons.running(node, "signerd") is not None,
        zones=zones,
        watched=watched,
    )


def _input_digest(node: Node, zone: str) -> str | None:
    """sha256 of the signer's current input for the zone (what was last checked and stored)."""
    path = node.paths.unsigned_zone(zone)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def op_zone_list(duo: Duo, node: Node, req: P.Empty) -> P.ZoneListReply:
    """The enforcer's zones, with what the watcher last did with each zone's input file (if it
    watches): a refused file shows here with its file:line error."""
    inputs = load_state(state_path(node.paths.state))
    zones = []
    for z in _zones(node):
        s = inputs.get(z.name)
        zones.append(
            P.ZoneEntry(
                name=z.name, policy=z.policy, next_change=z.next_change,
                input_digest=_input_digest(node, z.name),
                input=None if s is None else P.InputStatus(status=s.status, message=s.message, file=s.file),
            )
        )  # fmt: skip
    known = {z.name for z in zones}
    # A refused file that is gone since (deleted, or renamed to its zone's other name) is no news.
    refused = [
        P.RefusedInput(zone=name, status=s.status, message=s.message, file=s.file)
        for name, s in sorted(inputs.items())
        if name not in known and s.status == "error" and (not s.file or Path(s.file).exists())
    ]
    return P.ZoneListReply(node=node.name, zones=zones, refused=refused)


def recheck(duo: Duo, node: Node, zone: str, text: str) -> None:
    """The node trusts no zone text from the wire: the controller's checks once more, here (one
    SOA, names inside the zone, no signer records, the record limit), before any file is written."""
    verify_zone_text(
        text, zone, source=f"node {node.name}: zone {zone} as received",
        max_records=duo.config.input.max_records,
    )  # fmt: skip


def op_zone_add(duo: Duo, node: Node, req: P.ZoneInput) -> P.ZoneAddReply:
    """Add a checked zone: store its text as the signer's input, then `zone add` in the enforcer.

    The controller has checked the text already; here we only refuse a zone the
    node has, and undo the input file if the enforcer refuses.
    """
    zone = req.zone
    recheck(duo, node, zone, req.text)
    known = [z.name for z in _zones(node)]
    if zone in known:
        raise NodeError(f"node {node.name}: zone {zone} exists already")
    path = node.paths.unsigned_zone(zone)
    write_atomic(path, req.text, mode=0o640)
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
    return P.ZoneAddReply(node=node.name, zone=zone, added=True)


def op_zone_add_batch(duo: Duo, node: Node, req: P.ZoneBatchRequest) -> P.ZoneBatchReply:
    """Add many checked zones in one enforcer round trip: their input files, then zonelist.xml with
    every zone, then `zonelist import` (which adds what is new and touches nothing else)."""
    known = [z.name for z in _zones(node)]
    new = [z for z in req.zones if z.zone not in known]
    for entry in new:
        recheck(duo, node, entry.zone, entry.text)
    for entry in new:
        write_atomic(node.paths.unsigned_zone(entry.zone), entry.text, mode=0o640)
    try:
        write_zonelist(duo, node, [*known, *(z.zone for z in new)])
        enforcer(node)("zonelist", "import")
    except DuoError:
        for entry in new:  # the enforcer did not take them: no stray input files
            node.paths.unsigned_zone(entry.zone).unlink(missing_ok=True)
        write_zonelist(duo, node, known)
        raise
    now = {z.name for z in _zones(node)}
    missing = [z.zone for z in new if z.zone not in now]
    if missing:
        raise NodeError(f"node {node.name}: zonelist import did not add {', '.join(missing[:5])}")
    log.info("node %s: %d zones added", node.name, len(new))
    return P.ZoneBatchReply(node=node.name, added=[z.zone for z in new])


def op_zone_update(duo: Duo, node: Node, req: P.ZoneUpdateRequest) -> P.ZoneUpdateReply:
    """New checked data for a zone the node has: replace the signer's input, then ask it to sign.

    The input file is replaced atomically, so the signer reads the old or the new
    version, never half of one. A signer that is down reads the new file when it
    starts; that is reported, not an error. With the enforcer down too, the zone is
    checked against the node's zonelist.xml (kept equal to the enforcer's zones), so
    new data reaches a stopped node whose host answers: its signer reads it at start,
    before it serves again.
    """
    zone = req.zone
    if zone not in _zone_names(node):
        raise NodeError(f"node {node.name}: zone {zone} is not on this node; zone add it")
    recheck(duo, node, zone, req.text)
    write_atomic(node.paths.unsigned_zone(zone), req.text, mode=0o640)
    if daemons.running(node, "signerd") is None:
        _mark_pending(node, zone, True)
        return P.ZoneUpdateReply(
            node=node.name, zone=zone, signing=False, note="signer down: signs when it starts"
        )
    try:
        sign(node, zone, req.serial)
    except CommandError as exc:
        _mark_pending(node, zone, True)
        note = f"new data stored, but the signer did not take the sign request: {exc}"
        return P.ZoneUpdateReply(node=node.name, zone=zone, signing=False, note=note)
    _mark_pending(node, zone, False)
    return P.ZoneUpdateReply(node=node.name, zone=zone, signing=True)


SIGN_SCHEDULED = "scheduled for immediate re-sign"


def sign(node: Node, zone: str, serial: int | None = None) -> None:
    """Ask the signer to sign the zone's input now (with `serial` as its next SOA serial).

    ods-signer 2.1.12 was seen to exit 1 with its success message ("Zone Z scheduled for immediate
    re-sign.") when the zone was being signed at that moment (a watcher's update): the request was
    taken, so that is not an error. Short timeout: a hung signer must not hold up the caller.
    ods-signer takes `sign ZONE --serial N` only as one argument (else "too many arguments").
    """
    command = f"sign {zone} --serial {serial}" if serial else f"sign {zone}"
    try:
        Signer(node.paths.signer_sock, timeout=SIGN_TIMEOUT)(command)
    except CommandError as exc:
        if SIGN_SCHEDULED not in exc.stdout:
            raise
        log.info(
            "node %s: %s: the signer took it (%s, exit %d)",
            node.name,
            command,
            SIGN_SCHEDULED,
            exc.returncode,
        )


def op_zone_levelled(duo: Duo, node: Node, req: P.ZoneRequest) -> P.Empty:
    """The controller found the zone's pending input served at a serial that needs no change."""
    _mark_pending(node, req.zone, False)
    return P.Empty()


def _pending(node: Node, zone: str) -> Path:
    return node.paths.state / "pending-sign" / zone_file_name(zone)


def _mark_pending(node: Node, zone: str, pending: bool) -> None:
    """Input stored while the signer could not take it: the controller levels its serial once the
    signer runs (duo_ods.zones.catchup), since a starting signer picks a serial of its own."""
    path = _pending(node, zone)
    if pending:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    else:
        path.unlink(missing_ok=True)


def op_state_export(duo: Duo, node: Node, req: P.Empty) -> P.StateExportReply:
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
        state = states.get(z.name)
        zones.append(
            P.ZoneExport(
                zone=z.name, text=text, states=None if state is None else P.ZoneStateMsg.model_validate(state)
            )
        )
    return P.StateExportReply(node=node.name, zones=zones)


def op_zone_resign(duo: Duo, node: Node, req: P.ZoneResignRequest) -> P.ZoneResignReply:
    """Sign the zone's current input again with a given serial (serial levelling)."""
    if daemons.running(node, "signerd") is None:
        raise NodeError(f"node {node.name}: signer is not running")
    sign(node, req.zone, req.serial)
    _mark_pending(node, req.zone, False)
    return P.ZoneResignReply(node=node.name, zone=req.zone, serial=req.serial)


def op_relay_sync(duo: Duo, node: Node, req: P.Empty) -> P.RelaySyncReply:
    """The node's transfer relay and catalog follow the zones its signer serves (duo_ods/relay)."""
    result = sync_relay(duo, node, _zone_names(node))
    return P.RelaySyncReply(node=node.name, **asdict(result))


def op_zone_remove(duo: Duo, node: Node, req: P.ZoneRequest) -> P.ZoneRemoveReply:
    """Delete the zone from the enforcer, with the node's signer stopped meanwhile.

    Workaround for an ODS 2.1.12 signer bug (use after free): when a running ods-signerd drops a
    removed zone from its zone list (at its next `update --all`; the enforcer's `ods-signer update
    NEWZONE` for a zone the signer does not know yet falls back to it), engine_update_zones
    (signer/src/daemon/engine.c, the ZONE_ZL_REMOVED branch) frees the zone's DNS-output notify
    handler (zone_cleanup -> notify_cleanup) without netio_remove_handler: the xfrhandler thread's
    netio_dispatch (signer/src/wire/netio.c) then reads the freed handler, and once the memory is
    reused the signer dies with "[netio] fatal error pselect: Bad file descriptor" or a segfault in
    netio_dispatch (seen in test_batch after its `zone remove`; on a lab every signer that had 4 to 6
    removals died within minutes, 3 of 3; none in 11 removals with this workaround). Fixed upstream
    after 2.1 (opendnssec commit 491c3866f, SUPPORT-226), never released in 2.1.x. A signer started
    after the enforcer's delete reads the zone list without the zone and never sets the handler up.
    `zone remove` asks the nodes one at a time, so the other node serves meanwhile (two watchers
    removing a deleted file's zone may restart both at once; the secondaries serve on)."""
    zone = req.zone
    known = [z.name for z in _zones(node)]
    if zone not in known:
        return P.ZoneRemoveReply(node=node.name, zone=zone, removed=False)
    with daemons.signer_stopped(node):
        enforcer(node)("zone", "delete", "--zone", zone)
    node.paths.unsigned_zone(zone).unlink(missing_ok=True)
    _mark_pending(node, zone, False)
    write_zonelist(duo, node, [z for z in known if z != zone])
    log.info("node %s: zone %s removed", node.name, zone)
    return P.ZoneRemoveReply(node=node.name, zone=zone, removed=True)
