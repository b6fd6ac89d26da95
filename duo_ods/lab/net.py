"""Loopback addresses and ports for the lab."""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

from duo_ods.errors import LabError


def check_free(address: str, port: int, what: str) -> None:
    """Refuse early, with a clear message, when something already holds address:port."""
    for kind, name in ((socket.SOCK_DGRAM, "udp"), (socket.SOCK_STREAM, "tcp")):
        with socket.socket(socket.AF_INET, kind) as sock:
            # As servers do: connections in TIME_WAIT (a recent AXFR) must not count as "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise LabError(f"{what}: {address} port {port}/{name} is not available ({reason})") from None


MIN_NODES, MAX_NODES = 2, 5


@dataclass(frozen=True)
class Placed:
    name: str
    address: str


@dataclass(frozen=True)
class AddressPlan:
    """Where everything of a lab listens: the exporter on the base address, then the nodes, then the
    secondaries, then the parent, one loopback address each. With two nodes this is the plan the
    lab always had (nodes +1 and +2, secondaries +3 and +4, parent +5)."""

    base: str
    nodes: tuple[Placed, ...]
    secondaries: tuple[Placed, ...]
    parent: str


def node_names(count: int) -> list[str]:
    """a, b, c, ...: the lab's node names."""
    return [chr(ord("a") + i) for i in range(count)]


def address_plan(base_address: str, nodes: int = 2, split: bool = False) -> AddressPlan:
    """The lab's addresses for `nodes` nodes: one secondary (failover over every node) or, split,
    one secondary per node. LabError for a count out of range or an address off loopback."""
    if not MIN_NODES <= nodes <= MAX_NODES:
        raise LabError(f"--nodes {nodes}: the lab runs {MIN_NODES} to {MAX_NODES} nodes")
    base = ipaddress.IPv4Address(base_address)
    # The split secondaries come right after the nodes; the parent after the most secondaries
    # there could be, so it does not move with --split.
    last = base + 2 * nodes + 1
    for address in (base, last):
        if not address.is_loopback:
            raise LabError(f"--base-address {base}: the lab only uses loopback addresses ({address} is not)")
    placed = tuple(Placed(n, str(base + 1 + i)) for i, n in enumerate(node_names(nodes)))
    count = nodes if split else 1
    secondaries = tuple(Placed(f"ns{i + 1}", str(base + 1 + nodes + i)) for i in range(count))
    return AddressPlan(str(base), placed, secondaries, str(last))
