"""A zone removed and added again comes back above every serial its old copies carry.

Removal does not reach every copy at once: a secondary, or a relay that reloads an old zone file,
can still hold the zone's last version at serial S when the zone is added again. The signers start
the returning zone afresh (`zone remove` restarts the signer, see duo_ods.node.ops), so their first
serial can be S or lower, with other content or other keys (`zone add --new-keys`): the copies that
hold S would keep the old version, signed by keys the parent no longer vouches for.

So at removal the highest serial seen anywhere (signers, relays, secondaries) is recorded in the
backup store's `state/removed-serials/ZONE.json`, and when the zone is added again its input's SOA
serial is raised above that record and above every serial served at that moment. The signer signs
its first version at one above its input's serial (the ODS 2.1.12 behaviour that
duo_ods.zones.serial.with_serial_floor relies on), so every old copy is outranked.

The record is kept after the zone is back: each node's watcher adds it on its own, and the second
must find it too. A record lower than the serials served later raises nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from duo_ods.config.resolve import Duo, zone_file_name
from duo_ods.dns.query import soa_serial
from duo_ods.dns.tsig import transfer_key
from duo_ods.render.engine import write_atomic
from duo_ods.zones.serial import next_serial, with_serial_floor
from duo_ods.zones.validate import CheckedZone

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 1.0  # seconds per SOA query; every copy is asked at once


def record_path(duo: Duo, zone: str) -> Path:
    return duo.backup_dir / "state" / "removed-serials" / f"{zone_file_name(zone)}.json"


def serials_seen(duo: Duo, zone: str, *, relays: bool = True, timeout: float = QUERY_TIMEOUT) -> list[int]:
    """Every SOA serial the zone is served with now: by the signers, their relays, the secondaries."""
    key = transfer_key(duo)
    asks: list[tuple[str, int, bool]] = [(n.address, n.port, True) for n in duo.nodes.values()]
    if relays:
        asks += [(n.relay_address, n.relay_port, False) for n in duo.nodes.values()]
    asks += [(s.address, s.port, False) for s in duo.config.secondaries]

    def ask(where: tuple[str, int, bool]) -> int | None:
        address, port, signed = where  # a signer answers only with the transfer key
        return soa_serial(address, port, zone, key if signed else None, timeout)

    with ThreadPoolExecutor(max_workers=len(asks)) as pool:
        return [s for s in pool.map(ask, asks) if s is not None]


def recorded_serial(duo: Duo, zone: str) -> int | None:
    """The highest serial seen when the zone was last removed; None: no (readable) record."""
    try:
        return int(json.loads(record_path(duo, zone).read_text(encoding="utf-8"))["serial"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("zone %s: unreadable serial record %s (%s); using what is served now", zone,
                    record_path(duo, zone), exc)  # fmt: skip
        return None


def remember_serial(duo: Duo, zone: str) -> int | None:
    """Before a zone is removed: record the highest serial served anywhere (kept if higher already).

    Never raises: a removal goes on without the record (the add then relies on what is still
    served at that moment); the reason is logged.
    """
    seen = serials_seen(duo, zone)
    old = recorded_serial(duo, zone)
    if old is not None:
        seen.append(old)
    if not seen:
        return None
    highest = max(seen)
    path = record_path(duo, zone)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, json.dumps({"zone": zone, "serial": highest}) + "\n", mode=0o600)
    except OSError as exc:
        log.error("zone %s: cannot record its serial before removal in %s: %s", zone, path, exc.strerror)
        return None
    return highest


def above_old_copies(duo: Duo, checked: CheckedZone) -> CheckedZone:
    """The checked zone as a returning zone must be added: its SOA serial above every old copy.

    Unchanged for a zone never removed (no record: the duo served no copy of it), and when its
    serial is above every copy already.
    """
    recorded = recorded_serial(duo, checked.name)
    if recorded is None:
        return checked
    floor = next_serial([recorded, *serials_seen(duo, checked.name)], duo.config.policy.serial)
    if checked.serial >= floor:
        return checked
    text = with_serial_floor(checked.text, checked.name, floor)
    log.info("zone %s: back after removal; its input serial %d is raised to %d, above its old copies",
             checked.name, checked.serial, floor)  # fmt: skip
    return dataclasses.replace(checked, text=text, serial=floor)
