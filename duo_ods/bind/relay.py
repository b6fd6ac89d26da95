"""named config for a node's transfer relay: the BIND instance that pulls from its own signer and
serves the secondaries with TSIG (and serves the node's catalog zone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from duo_ods.bind.render import (
    named_address,
    named_key_name,
    named_path,
    named_word,
    named_zone,
    primaries_for,
)
from duo_ods.config.resolve import Duo, Node, zone_file_name
from duo_ods.render.engine import render


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


@dataclass(frozen=True)
class RelayZone:
    name: str
    file: str


def relay_files(node: Node) -> dict[str, Path]:
    d = node.relay_dir
    return {
        "conf": d / "named.conf",
        "key": d / "transfer.key",  # the relay's own copy: named runs as user bind (relay/sync.py)
        "zones": d / "zones.conf",
        "catalog": d / "catalog.db",
        "state": d / "relay.json",
        "record": d / "named.json",
        "pid": d / "named.pid",
        "stderr": d / "named.stderr",
        "log": d / "named.log",
    }


def render_relay_conf(duo: Duo, node: Node) -> str:
    t = duo.config.transfer
    files = relay_files(node)
    # Only the secondaries that pull from this node (split: its own set) hear from its relay.
    secondaries = [
        Endpoint(named_address(f"secondary {s.name} address", s.address), int(s.port))
        for s in duo.config.secondaries
        if node.name in primaries_for(duo, s.name, t.mode)
    ]
    return render(
        "relay-named.conf.j2",
        {
            "node": named_word("node name", node.name),
            "dir": named_path(f"node {node.name} relay folder", node.relay_dir),
            "address": named_address(f"node {node.name} relay address", node.relay_address),
            "port": int(node.relay_port),
            "signer_address": named_address(f"node {node.name} address", node.address),
            "key_name": named_key_name(t.key_name),
            "key_file": named_path("relay transfer key file", files["key"]),
            "zones_file": named_path("relay zones file", files["zones"]),
            "secondaries": secondaries,
            "min_refresh": int(t.min_refresh), "max_refresh": int(t.max_refresh),
            "min_retry": int(t.min_retry), "max_retry": int(t.max_retry),
        },
    )  # fmt: skip


def render_relay_zones(node: Node, catalog: str, zones: list[str]) -> str:
    names = sorted({named_zone(z) for z in zones})
    return render(
        "relay-zones.conf.j2",
        {
            "node": named_word("node name", node.name),
            "catalog": named_zone(catalog),
            "catalog_file": named_path("catalog file", relay_files(node)["catalog"]),
            "signer_address": named_address(f"node {node.name} address", node.address),
            "signer_port": int(node.port),
            "zones": [
                RelayZone(z, named_path(f"zone {z} file", f"zones/{zone_file_name(z)}.db")) for z in names
            ],
        },
    )
