"""RFC 9432 (version 2) catalog zones of the duo's signed zones: names, member labels, zone text.

Pure: no I/O. The relay of each node serves its node's catalog (plain, unsigned: the secondaries do
not validate it). Failover: one catalog name, each relay's copy listing what its own signer serves;
split: one catalog per signer, so each set of secondaries learns its members from its own signer.
"""

from __future__ import annotations

import hashlib
import time

import dns.name

from duo_ods.config.resolve import Duo

CATALOG_PARENT = "catalog.invalid"  # RFC 9432 section 4: a catalog's name need not resolve


def catalog_name(duo: Duo, node: str) -> str:
    """The catalog the node's relay serves: one for the duo (failover), or one per signer (split)."""
    if duo.config.transfer.mode == "split":
        return f"{node}.{duo.config.name}.{CATALOG_PARENT}"
    return f"{duo.config.name}.{CATALOG_PARENT}"


def catalog_names(duo: Duo, nodes: list[str]) -> list[str]:
    """The catalogs a secondary pulling from these nodes consumes (failover: the one)."""
    return sorted({catalog_name(duo, n) for n in nodes})


def member_label(zone: str) -> str:
    """A member's unique label (RFC 9432 4.4.1): SHA-1 of the zone's wire name, so stable everywhere."""
    wire = dns.name.from_text(zone).to_digestable()
    return hashlib.sha1(wire).hexdigest()  # noqa: S324 - a label, not a security property


def next_serial(previous: int | None, now: float | None = None) -> int:
    """Forward always: the clock (so two nodes' copies of a failover catalog stay near each other),
    or one more than before when the clock is not ahead of it."""
    clock = int(time.time() if now is None else now) % (1 << 32)
    if previous is None:
        return clock
    return max(clock, (previous + 1) % (1 << 32))


def catalog_text(name: str, serial: int, members: list[str]) -> str:
    """The catalog's zone file: SOA, NS invalid., version 2, one PTR per member."""
    lines = [
        f"; catalog zone rendered by ods-duo (RFC 9432 version 2): {len(members)} members",
        "$TTL 0",
        f"{name}. IN SOA invalid. invalid. {serial} 60 10 1209600 0",
        f"{name}. IN NS invalid.",
        f'version.{name}. IN TXT "2"',
    ]
    lines += [f"{member_label(z)}.zones.{name}. IN PTR {z}." for z in sorted(members)]
    return "\n".join(lines) + "\n"
