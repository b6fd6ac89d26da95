"""Zone add/update/remove/list across every node of the duo.

The file is checked once, before any node is touched; then the checked text is recorded as the
zone's newest good input (duo_ods.zones.inputs: what a node that misses it catches up to), and
each node gets it. If a node refuses an add, the nodes that took the zone in this run give it
back, so a failure leaves the duo as it was.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name
from duo_ods.dns.notify import send_notify
from duo_ods.dns.query import soa_serial
from duo_ods.dns.tsig import transfer_key
from duo_ods.errors import DuoError, NodeError
from duo_ods.keys.reuse import remember_keys
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.zones.inputs import forget_input, record_input, record_inputs
from duo_ods.zones.returning import above_old_copies, remember_serial
from duo_ods.zones.serial import next_serial
from duo_ods.zones.validate import CheckedZone, check_zone_file, zone_name_from_filename

log = logging.getLogger(__name__)


@dataclass
class ZoneAddResult:
    zone: str
    serial: int
    records: int
    stripped: int
    added_on: list[str] = field(default_factory=list)
    already_on: list[str] = field(default_factory=list)


def exists_message(zone: str) -> str:
    """Adding a zone that every node has already: name the command that changes its data."""
    return (
        f"zone {zone} exists on every node already; to change its data: "
        f"ods-duo zone update {zone} --file FILE (or replace its file in a watched input directory)"
    )


def node_zones(duo: Duo, client: NodeClient) -> dict[str, list[str]]:
    """Zones per node; raises a clear error naming the first node that cannot answer."""
    return {name: client.call(name, P.ZONE_LIST).names for name in duo.nodes}


def add_zone(duo: Duo, client: NodeClient, zone: str, file: Path) -> ZoneAddResult:
    name = normalize_zone_name(zone)
    checked = above_old_copies(duo, check_file(duo, name, file))
    current = node_zones(duo, client)  # every node must answer before any changes
    result = ZoneAddResult(name, checked.serial, checked.records, checked.stripped)
    result.already_on = [n for n, zones in current.items() if name in zones]
    if len(result.already_on) == len(duo.nodes):
        raise NodeError(exists_message(name))
    record_input(duo, checked)  # before any node has it: a node that misses it catches up to it
    for node in duo.nodes:
        if node in result.already_on:
            continue
        try:
            client.call(node, P.ZONE_ADD, P.ZoneInput(zone=name, text=checked.text))
        except DuoError as exc:
            _undo_add(client, name, result.added_on)
            if not result.already_on:  # the zone is on no node again: nothing to catch up to
                forget_input(duo, name)
            raise NodeError(f"zone {name}: node {node} refused it, nothing changed: {exc}") from exc
        result.added_on.append(node)
    log.info("zone %s added on %s", name, ", ".join(result.added_on))
    return result


@dataclass
class FileAdd:
    """What `zone add FILE...` did with one file."""

    file: str
    zone: str | None
    result: ZoneAddResult | None = None
    error: str | None = None


def add_zones(duo: Duo, client: NodeClient, files: list[Path]) -> list[FileAdd]:
    """Many zone files in one command: each checked on its own (a bad one is reported and the others
    go on), then the good ones to every node in batches (one enforcer round trip per node and batch,
    the nodes at once). A batch a node refuses is taken back from the nodes that took it."""
    outcomes = [FileAdd(str(f), zone_name_from_filename(f.name)) for f in files]
    current = {node: set(zones) for node, zones in node_zones(duo, client).items()}
    good: list[tuple[FileAdd, CheckedZone]] = []
    seen: set[str] = set()
    for outcome, file in zip(outcomes, files, strict=True):
        if outcome.zone is None:
            outcome.error = f"{file.name}: not a zone file name (ZONE or ZONE.zone)"
            continue
        if outcome.zone in seen:
            outcome.error = f"zone {outcome.zone}: named by another file of this command"
            continue
        seen.add(outcome.zone)
        if all(outcome.zone in zones for zones in current.values()):
            outcome.error = exists_message(outcome.zone)
            continue
        try:
            checked = above_old_copies(duo, check_file(duo, outcome.zone, file))
        except DuoError as exc:
            outcome.error = str(exc)
            continue
        good.append((outcome, checked))
    size = duo.config.watch.batch_size
    for start in range(0, len(good), size):
        _add_batch(duo, client, good[start : start + size], current)
    return outcomes


def _add_batch(
    duo: Duo, client: NodeClient, batch: list[tuple[FileAdd, CheckedZone]], current: dict[str, set[str]]
) -> None:
    record_inputs(duo, [c for _o, c in batch])  # before any node has them, as add_zone does
    added: dict[str, list[str]] = {}
    failed: dict[str, str] = {}

    def add(node: str) -> None:
        zones = [P.ZoneInput(zone=c.name, text=c.text) for _o, c in batch if c.name not in current[node]]
        if zones:
            added[node] = client.call(node, P.ZONE_ADD_BATCH, P.ZoneBatchRequest(zones=zones)).added

    with ThreadPoolExecutor(max_workers=max(1, len(duo.nodes))) as pool:
        futures = {node: pool.submit(add, node) for node in duo.nodes}
    for node, future in futures.items():
        try:
            future.result()
        except DuoError as exc:
            failed[node] = str(exc)
    if failed:
        for node, zones in added.items():
            for zone in zones:
                _undo_add(client, zone, [node])
        why = "; ".join(f"node {n} refused them: {e}" for n, e in failed.items())
        for outcome, checked in batch:
            if not any(checked.name in zones for zones in current.values()):
                forget_input(duo, checked.name)  # on no node again: nothing to catch up to
            outcome.error = f"zone {checked.name}: nothing changed: {why}"
        return
    for outcome, checked in batch:
        result = ZoneAddResult(checked.name, checked.serial, checked.records, checked.stripped)
        result.already_on = [n for n in duo.nodes if checked.name in current[n]]
        result.added_on = [n for n in duo.nodes if checked.name in added.get(n, [])]
        outcome.result = result
        for node in result.added_on:
            current[node].add(checked.name)
    log.info("%d zones added on %s", len(batch), ", ".join(duo.nodes))


def _undo_add(client: NodeClient, zone: str, nodes: list[str]) -> None:
    for node in nodes:
        try:
            client.call(node, P.ZONE_REMOVE, P.ZoneRequest(zone=zone))
        except DuoError as exc:  # report, but the original error is the one to raise
            log.error("zone %s: could not undo add on node %s: %s", zone, node, exc)


def update_zone(duo: Duo, client: NodeClient, zone: str, file: Path) -> dict[str, Any]:
    """Checked new data for a zone to every node that has it; each re-signs on its own.

    Unlike add this is not all-or-nothing: a node that cannot be reached keeps
    its last good data (and is reported) while the others move on, which is the
    point of having two signers.
    """
    return update_checked(duo, client, check_file(duo, normalize_zone_name(zone), file), list(duo.nodes))


def check_file(duo: Duo, zone: str, file: Path, *, input_dir: Path | None = None) -> CheckedZone:
    """The input checks every path applies (CLI and watcher): $INCLUDE confined to the file's folder,
    the [input] limits. A file in a watched `input_dir` may be a symbolic link only to a file inside it;
    a file named on the command line is the operator's choice, link or not."""
    return check_zone_file(
        file,
        zone,
        include_root=input_dir if input_dir is not None else file.resolve().parent,
        dnssec_records=duo.config.policy.dnssec_records_in_input,
        max_bytes=duo.config.input.max_bytes,
        max_records=duo.config.input.max_records,
        confine_to=input_dir,
    )


CATCHES_UP = "it catches up when it returns"
# How often _wait_served asks the signers for their serial (a UDP SOA query each): the NOTIFY to the
# relays and secondaries goes out at most this long after the signer serves the new serial.
SERVED_POLL = 0.02


def update_checked(duo: Duo, client: NodeClient, checked: CheckedZone, nodes: list[str]) -> dict[str, Any]:
    """New data to `nodes` at once, each signing with one serial above every served serial.

    The checked text is recorded as the zone's newest input first (the watcher gets that by
    calling this), so a node that misses it is caught up later (duo_ods.zones.catchup). Each
    node's outcome is in result["nodes"][node]["status"]: "signed" (signing the new data),
    "stored" (its signer is down: it has the new input and signs it when it starts) or "missed"
    (not reached); result["missed"] names every node that is not signing it now.
    """
    name = checked.name
    clock = _Clock()
    record_input(duo, checked)
    result: dict[str, Any] = {"zone": name, "serial": checked.serial, "records": checked.records, "nodes": {}}
    served = {n: s for n, s in served_serials(duo, name).items() if s is not None}
    held = [s for s in secondary_serials(duo, name).values() if s is not None]
    # Above every serial a signer or a secondary serves (a secondary may hold a higher serial from a
    # signer that is down now: below it, the new data would never reach it), and above the input's
    # own: the signer never goes below the input's serial (it picks its own then).
    known = [*served.values(), *held]
    target = next_serial([*known, checked.serial], duo.config.policy.serial) if known else None
    result["output_serial"] = target
    request = P.ZoneUpdateRequest(zone=name, text=checked.text, serial=target)
    clock.lap("serials")  # the input recorded, every signer's and secondary's serial asked

    def one(node: str) -> dict[str, Any]:
        try:
            reply = client.call(node, P.ZONE_UPDATE, request)
        except DuoError as exc:
            log.warning("zone %s: node %s keeps its last data: %s", name, node, exc)
            return {"status": "missed", "error": str(exc)}
        return {"status": "signed" if reply.signing else "stored", **reply.model_dump(mode="json")}

    # All nodes at once: a hung node must not delay the healthy one (that is the duo's point).
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        result["nodes"] = dict(zip(nodes, pool.map(one, nodes), strict=True))
    result["missed"] = [n for n, r in result["nodes"].items() if r["status"] != "signed"]
    result["ok"] = not result["missed"]
    if all(r["status"] == "missed" for r in result["nodes"].values()):
        raise NodeError(f"zone {name}: no node took the new data (recorded: {CATCHES_UP}): " + "; ".join(
            r["error"] for r in result["nodes"].values()))  # fmt: skip
    signing = [n for n, r in result["nodes"].items() if r["status"] == "signed"]
    clock.lap("nodes")
    result["served"] = _wait_served(duo, name, signing, target)
    clock.lap("served")
    if target is not None and any(s == target for s in result["served"].values()):
        result["notified"] = notify_secondaries(duo, name)
        clock.lap("notify")
    result["seconds"] = clock.laps
    return result


class _Clock:
    """Seconds each step of an update took (result["seconds"]; the watcher logs them)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.laps[step] = round(now - self._last, 3)
        self._last = now


def missed_summary(result: dict[str, Any]) -> str | None:
    """One line naming the nodes that did not take an update now, or None when every node did."""
    if not result.get("missed"):
        return None
    why = "; ".join(
        f"{n}: {'not reached' if r['status'] == 'missed' else 'signer down, new input stored'}"
        for n, r in result["nodes"].items() if n in result["missed"]
    )  # fmt: skip
    return (
        f"zone {result['zone']}: node {', '.join(result['missed'])} missed the update ({why}); {CATCHES_UP}"
    )


def secondary_serials(duo: Duo, zone: str, timeout: float = 2.0) -> dict[str, int | None]:
    """The SOA serial each configured secondary serves now (None: no answer)."""
    secs = duo.config.secondaries
    if not secs:
        return {}

    def ask(i: int) -> int | None:
        return soa_serial(secs[i].address, secs[i].port, zone, None, timeout)

    with ThreadPoolExecutor(max_workers=len(secs)) as pool:
        return dict(zip((s.name for s in secs), pool.map(ask, range(len(secs))), strict=True))


def _wait_served(
    duo: Duo, zone: str, nodes: list[str], target: int | None, timeout: float = 30.0
) -> dict[str, Any]:
    """Until the signing nodes serve the target serial (or the timeout): what each serves then."""
    deadline = time.monotonic() + timeout
    while True:
        served = served_serials(duo, zone)
        if target is None or all(served.get(n) == target for n in nodes) or time.monotonic() > deadline:
            return served
        time.sleep(SERVED_POLL)


def notify_secondaries(duo: Duo, zone: str) -> dict[str, str]:
    """NOTIFY (signed) the relays, then the secondaries: a relay that missed its signer's NOTIFY (or got
    a stale one) transfers now and notifies the secondaries itself; the secondaries ask the relays."""
    key = transfer_key(duo)
    for name, node in duo.nodes.items():
        if problem := send_notify(node.relay_address, node.relay_port, zone, key):
            log.warning("zone %s: NOTIFY to the relay of node %s: %s", zone, name, problem)
    outcome = {}
    for sec in duo.config.secondaries:
        problem = send_notify(sec.address, sec.port, zone, key)
        outcome[sec.name] = problem or "notified"
        if problem:
            log.warning("zone %s: NOTIFY to secondary %s: %s", zone, sec.name, problem)
    return outcome


def served_serials(duo: Duo, zone: str, timeout: float = 2.0) -> dict[str, int | None]:
    """The SOA serial each signer serves now (None: not signed yet, or not answering in time)."""
    key = transfer_key(duo)

    def ask(node: str) -> int | None:
        return soa_serial(duo.nodes[node].address, duo.nodes[node].port, zone, key, timeout)

    with ThreadPoolExecutor(max_workers=len(duo.nodes)) as pool:
        return dict(zip(duo.nodes, pool.map(ask, duo.nodes), strict=True))


class InputFileStillThere(NodeError):
    """zone remove while the zone's file is still in a watched input directory."""


def watched_files(duo: Duo, client: NodeClient, zone: str) -> dict[str, list[str]]:
    """The zone's files (ZONE, ZONE.zone) in each node's watched input directory: as the node sees
    them (INPUT_STATE), and on this machine for nodes that do not answer."""
    found: dict[str, list[str]] = {}
    for name, node in duo.nodes.items():
        try:
            files = client.call(name, P.INPUT_STATE, P.InputStateRequest(zone=zone)).watched
        except DuoError:
            files = _local_files(node.input_dir, zone)
        if files:
            found[name] = files
    return found


def _local_files(folder: Path, zone: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and zone_name_from_filename(p.name) == zone)


def remove_zone(duo: Duo, client: NodeClient, zone: str, delete_file: bool = False) -> dict[str, bool]:
    """Remove the zone from every node; refused while its file is in a watched input directory.

    A watcher that sees that file change again would add the zone back at once. The zone's live
    keys with their enforcer state are recorded first, so that a zone that comes back within the
    backup's retention gets them again, with the same DS (duo_ods.keys.reuse). `delete_file`
    removes the file from every input directory this machine can reach first (a node's watcher
    then records it as gone).
    """
    name = normalize_zone_name(zone)
    current = node_zones(duo, client)
    if not any(name in zones for zones in current.values()):
        raise NodeError(f"zone {name} is not on any node")
    if delete_file:
        for node in duo.nodes.values():
            for path in _local_files(node.input_dir, name):
                Path(path).unlink(missing_ok=True)
                log.info("zone %s: deleted %s from node %s's input directory", name, path, node.name)
    still = watched_files(duo, client, name)
    if still:
        where = "; ".join(f"node {n}: {', '.join(f)}" for n, f in still.items())
        hint = "delete it there" if delete_file else "delete the file first or pass --delete-file"
        raise InputFileStillThere(
            f"zone {name}: its file is still in a watched input directory ({where}): {hint}"
        )
    # Its keys and their state, kept for its return within the backup's retention (its DS may
    # still be at the parent then): duo_ods.keys.reuse.
    remember_keys(duo, client, name, [n for n, zones in current.items() if name in zones])
    remember_serial(duo, name)  # a return must come above its old copies: duo_ods.zones.returning
    request = P.ZoneRequest(zone=name)
    removed = {node: client.call(node, P.ZONE_REMOVE, request).removed for node in duo.nodes}
    forget_input(duo, name)
    return removed


def list_zones(duo: Duo, client: NodeClient) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One row per zone: on which nodes it is, and what each enforcer plans next; and the nodes
    that did not answer (down or unreachable: marked, not fatal)."""
    rows: dict[str, dict[str, Any]] = {}
    down: dict[str, str] = {}
    for node in duo.nodes:
        try:
            reply = client.call(node, P.ZONE_LIST)
        except DuoError as exc:
            down[node] = str(exc)
            continue
        for z in reply.zones:
            row = rows.setdefault(z.name, {"zone": z.name, "policy": z.policy, "nodes": {}})
            row["nodes"][node] = {
                "next_change": z.next_change, "input": z.input.model_dump() if z.input else None
            }  # fmt: skip
        for r in reply.refused:  # files the watcher refused before the zone ever existed
            row = rows.setdefault(r.zone, {"zone": r.zone, "policy": None, "nodes": {}})
            row.setdefault("refused", {})[node] = r.message
    for row in rows.values():
        row["on_all_nodes"] = set(row["nodes"]) == set(duo.nodes)
        row["unknown_on"] = sorted(down)
    return [rows[name] for name in sorted(rows)], down
