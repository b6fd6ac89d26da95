"""Zone add/remove/list across every node of the duo.

The file is checked once, before any node is touched; then each node gets the
same checked text. If a node refuses, the nodes that took the zone in this run
give it back, so a failure leaves the duo as it was.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duo_ods.bind.notify import send_notify
from duo_ods.bind.query import soa_serial
from duo_ods.bind.tsig import transfer_key
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError, NodeError
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.zones.check import CheckedZone, check_zone_file, normalize_zone_name
from duo_ods.zones.serial import next_serial

log = logging.getLogger(__name__)


@dataclass
class ZoneAddResult:
    zone: str
    serial: int
    records: int
    stripped: int
    added_on: list[str] = field(default_factory=list)
    already_on: list[str] = field(default_factory=list)


def node_zones(duo: Duo, client: NodeClient) -> dict[str, list[str]]:
    """Zones per node; raises a clear error naming the first node that cannot answer."""
    return {name: client.call(name, P.ZONE_LIST).names for name in duo.nodes}


def add_zone(duo: Duo, client: NodeClient, zone: str, file: Path) -> ZoneAddResult:
    name = normalize_zone_name(zone)
    checked = check_file(duo, name, file)
    current = node_zones(duo, client)  # every node must answer before any changes
    result = ZoneAddResult(name, checked.serial, checked.records, checked.stripped)
    result.already_on = [n for n, zones in current.items() if name in zones]
    if len(result.already_on) == len(duo.nodes):
        raise NodeError(f"zone {name} exists on every node already; to change its data, update its file")
    for node in duo.nodes:
        if node in result.already_on:
            continue
        try:
            client.call(node, P.ZONE_ADD, P.ZoneInput(zone=name, text=checked.text))
        except DuoError as exc:
            _undo_add(client, name, result.added_on)
            raise NodeError(f"zone {name}: node {node} refused it, nothing changed: {exc}") from exc
        result.added_on.append(node)
    log.info("zone %s added on %s", name, ", ".join(result.added_on))
    return result


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


def update_checked(duo: Duo, client: NodeClient, checked: CheckedZone, nodes: list[str]) -> dict[str, Any]:
    """New data to `nodes` at once, each signing with one serial above every node's served serial."""
    name = checked.name
    result: dict[str, Any] = {"zone": name, "serial": checked.serial, "records": checked.records, "nodes": {}}
    served = {n: s for n, s in served_serials(duo, name).items() if s is not None}
    # Above every served serial and above the input's own: the signer never goes below the input's
    # serial (it picks its own then, and the nodes would not wait for the same one).
    target = next_serial([*served.values(), checked.serial], duo.config.policy.serial) if served else None
    result["output_serial"] = target
    request = P.ZoneUpdateRequest(zone=name, text=checked.text, serial=target)

    def one(node: str) -> dict[str, Any]:
        try:
            reply = client.call(node, P.ZONE_UPDATE, request)
        except DuoError as exc:
            log.warning("zone %s: node %s keeps its last data: %s", name, node, exc)
            return {"error": str(exc)}
        return reply.model_dump(mode="json")

    # All nodes at once: a hung node must not delay the healthy one (that is the duo's point).
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        result["nodes"] = dict(zip(nodes, pool.map(one, nodes), strict=True))
    if all("error" in r for r in result["nodes"].values()):
        raise NodeError(f"zone {name}: no node took the new data: " + "; ".join(
            r["error"] for r in result["nodes"].values()))  # fmt: skip
    signing = [n for n, r in result["nodes"].items() if r.get("signing")]
    result["served"] = _wait_served(duo, name, signing, target)
    if target is not None and any(s == target for s in result["served"].values()):
        result["notified"] = notify_secondaries(duo, name)
    return result


def _wait_served(
    duo: Duo, zone: str, nodes: list[str], target: int | None, timeout: float = 30.0
) -> dict[str, Any]:
    """Until the signing nodes serve the target serial (or the timeout): what each serves then."""
    deadline = time.monotonic() + timeout
    while True:
        served = served_serials(duo, zone)
        if target is None or all(served.get(n) == target for n in nodes) or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


def notify_secondaries(duo: Duo, zone: str) -> dict[str, str]:
    key = transfer_key(duo)
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


def remove_zone(duo: Duo, client: NodeClient, zone: str) -> dict[str, bool]:
    name = normalize_zone_name(zone)
    current = node_zones(duo, client)
    if not any(name in zones for zones in current.values()):
        raise NodeError(f"zone {name} is not on any node")
    request = P.ZoneRequest(zone=name)
    return {node: client.call(node, P.ZONE_REMOVE, request).removed for node in duo.nodes}


def list_zones(duo: Duo, client: NodeClient) -> list[dict[str, Any]]:
    """One row per zone: on which nodes it is, and what each enforcer plans next."""
    rows: dict[str, dict[str, Any]] = {}
    for node in duo.nodes:
        reply = client.call(node, P.ZONE_LIST)
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
    return [rows[name] for name in sorted(rows)]
