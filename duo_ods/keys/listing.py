"""`key list` and `key ds`: what every node's enforcer and HSM say, side by side."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import DuoError, NodeError
from duo_ods.keys.dnssec import keytag, make_dnskey, make_ds
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient


def _comparable(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal on every node for a key (the next-transition time may differ by seconds)."""
    records = tuple(sorted((entry["records"] or {}).items()))
    return (entry["role"], entry["state"], entry["keytag"], entry["algorithm"], entry["bits"], records)


DOWN = "(down)"  # the state shown for a node that did not answer


def list_keys(duo: Duo, client: NodeClient, zone: str | None = None) -> list[dict[str, Any]]:
    """One row per (zone, key) with each node's view; 'differs' flags any disagreement.

    A node that does not answer (down, unreachable) is marked in every row, as
    {"state": "(down)", "down": True, "error": ...}, and left out of the comparison: the
    others' keys are still shown, when an operator needs them most. Every node down is an error.
    """
    request = P.KeyListRequest(zone=normalize_zone_name(zone) if zone else None)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    down: dict[str, str] = {}
    for node in duo.nodes:
        try:
            keys = client.call(node, P.KEY_LIST, request).keys
        except DuoError as exc:
            down[node] = str(exc)
            continue
        for key in keys:
            row = rows.setdefault(
                (key.zone, key.locator),
                {"zone": key.zone, "locator": key.locator, "role": key.role, "keytag": key.keytag,
                 "nodes": {}},
            )  # fmt: skip
            row["nodes"][node] = key.model_dump(mode="json")
    if down and len(down) == len(duo.nodes):
        raise NodeError("no node answers: " + "; ".join(down.values()))
    result = []
    for (_zone, _locator), row in sorted(rows.items()):
        views = [row["nodes"].get(node) for node in duo.nodes]
        row["missing_on"] = [node for node in duo.nodes if node not in row["nodes"] and node not in down]
        for node, error in down.items():
            row["nodes"][node] = {"state": DOWN, "down": True, "error": error}
        row["differs"] = bool(row["missing_on"]) or len({_comparable(v) for v in views if v}) > 1
        result.append(row)
    return result


@dataclass
class DsReport:
    zone: str
    ds: list[str] = field(default_factory=list)  # presentation format, one per KSK/CSK
    dnskey: list[str] = field(default_factory=list)
    per_node: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def ds_for_zone(duo: Duo, client: NodeClient, zone: str) -> DsReport:
    """The DS records (SHA-256) for the zone's KSK/CSK, as every node's enforcer and HSM see them."""
    zone = normalize_zone_name(zone)
    report = DsReport(zone)
    for node in duo.nodes:
        lines: list[str] = []
        for key in client.call(node, P.KEY_LIST, P.KeyListRequest(zone=zone)).keys:
            # The DS set the parent should have: a retiring KSK's DS is on its way out.
            if key.role not in ("KSK", "CSK") or key.state in ("generate", "retire", "dead"):
                continue
            public = client.call(node, P.KEY_PUBLIC, P.LocatorRequest(locator=key.locator)).public
            if public is None:
                report.warnings.append(
                    f"node {node}: key {key.locator} is in the enforcer but not in the HSM"
                )
                continue
            dnskey = make_dnskey(key.role, key.algorithm, base64.b64decode(public))
            if keytag(dnskey) != key.keytag:
                report.warnings.append(f"node {node}: key {key.locator} key tag differs from the enforcer's")
            owner = f"{zone}." if zone != "." else "."
            lines.append(f"{owner} IN DS {make_ds(zone, dnskey).to_text()}")
            if lines[-1] not in report.ds:
                report.ds.append(lines[-1])
                report.dnskey.append(f"{owner} IN DNSKEY {dnskey.to_text()}")
        report.per_node[node] = sorted(lines)
    if len({tuple(v) for v in report.per_node.values()}) > 1:
        report.warnings.append("the nodes disagree on the DS set: " + "; ".join(
            f"{n}: {len(v)} DS" for n, v in report.per_node.items()))  # fmt: skip
    if not report.ds:
        report.warnings.append(f"zone {zone} has no KSK or CSK yet: run key create")
    return report
