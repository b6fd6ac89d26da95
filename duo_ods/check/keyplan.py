"""`check` warnings about the key plan (issue 15): a key past its lifetime, a DS at the parental agents
that is not `key ds`'s, and signatures that would expire at a secondary before the SOA expire does."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdata
import dns.rdatatype
from dns.rdtypes.ANY.DS import DS

from duo_ods.config.durations import format_duration, parse_duration
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.listing import ds_for_zone
from duo_ods.ods.kaspdb import is_dead
from duo_ods.parent.agents import ask_all, ds_key, mismatches
from duo_ods.parent.config import parent_for
from duo_ods.protocol.client import NodeClient

LIFETIME_KEYS = {"KSK": "ksk_lifetime", "ZSK": "zsk_lifetime", "CSK": "csk_lifetime"}


def past_lifetime(
    keys: Sequence[Mapping[str, Any]], lifetimes: Mapping[str, int], now: float, grace: float
) -> list[str]:
    """Keys still the only live one of their role `grace` seconds after their lifetime (pure)."""
    found = []
    for role, lifetime in lifetimes.items():
        live = [k for k in keys if k["role"] == role and not is_dead(dict(k))]
        if len(live) != 1 or not lifetime:
            continue
        [key] = live
        over = now - (int(key["inception"]) + lifetime)
        if over > grace:
            found.append(
                f"{role} {key['keytag']} is {format_duration(int(over))} past its lifetime "
                f"({format_duration(lifetime)}) and no rollover started: is the scheduler running "
                "([rollover] auto, the key origin's watcher or `key schedule`)?"
            )
    return found


def soa_expire(address: str, port: int, zone: str) -> int | None:
    try:
        reply = dns.query.udp(dns.message.make_query(zone, dns.rdatatype.SOA), address, port=port, timeout=2)
    except (dns.exception.DNSException, OSError):
        return None
    soa = [rr for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SOA for rr in rrset]
    return int(soa[0].expire) if soa else None


def expiry_below_soa_expire(duo: Duo, zone: str, min_expiry_days: float | None) -> list[str]:
    """A secondary that loses its primaries serves the zone until the SOA expire: a signature that
    expires before then would be served expired."""
    if min_expiry_days is None:
        return []
    for sec in duo.config.secondaries:
        expire = soa_expire(sec.address, sec.port, zone)
        if expire is None:
            continue
        left = min_expiry_days * 86400
        if left < expire:
            return [
                f"the shortest signature validity left ({format_duration(int(left))}) is below the SOA "
                f"expire "
                f"({format_duration(expire)}): secondary {sec.name}, cut off from the signers, would serve "
                "expired signatures before it stops serving the zone"
            ]
        return []
    return []


def parent_ds_mismatch(duo: Duo, client: NodeClient, zone: str) -> list[str]:
    """Each parental agent's DS set against `key ds` (only for zones with a [parents] entry)."""
    parent = parent_for(duo, zone)
    if parent is None:
        return []
    expected = []
    for line in ds_for_zone(duo, client, zone).ds:
        rdata = dns.rdata.from_text("IN", "DS", line.split(" IN DS ", 1)[1])
        assert isinstance(rdata, DS)
        expected.append(ds_key(rdata))
    return mismatches(ask_all(parent.agents, zone), expected)


def key_plan_warnings(
    duo: Duo, client: NodeClient, zone: str, states: Mapping[str, Sequence[Mapping[str, Any]]],
    min_expiry_days: float | None,
) -> list[tuple[str, str]]:  # fmt: skip
    """(source, message) warnings for one zone; `states`: node -> the zone's keys (as check reads them)."""
    policy = duo.config.policy
    lifetimes = {role: parse_duration(getattr(policy, name)) for role, name in LIFETIME_KEYS.items()}
    grace = 2 * duo.config.rollover.interval + parse_duration(policy.skew_margin)
    found: list[tuple[str, str]] = []
    first = next(iter(states.values()), [])
    found += [("duo", m) for m in past_lifetime(first, lifetimes, time.time(), grace)]
    try:
        found += [("parent", m) for m in parent_ds_mismatch(duo, client, zone)]
    except DuoError as exc:
        found.append(("parent", f"the DS at the parent was not compared: {exc}"))
    found += [("duo", m) for m in expiry_below_soa_expire(duo, zone, min_expiry_days)]
    return found
