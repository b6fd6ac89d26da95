"""A secondary that serves older data than the zone's newest input, for longer than a margin.

The controller records each zone's newest good input before any node is told
(duo_ods.zones.inputs). Every secondary should serve that content within seconds (NOTIFY, then
AXFR); one that still serves other content `stale_after` seconds after the input was recorded
is critical: the newest data did not win there (a stale copy outranked it, or no signer serves
it). Within the margin it is only noted (an update is under way). The comparison is of content
(duo_ods.zones.content: without RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY and SOA), never serials.

Pure: the findings come from the copies the check fetched anyway; the record from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.zone

from duo_ods.check.checks import SourceFindings
from duo_ods.check.model import ZoneReport
from duo_ods.check.zoneview import record_text

Record = tuple[str, int, str, str]  # (owner, TTL, type, rdata), owner lower case
SKIPPED = frozenset({"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "SOA"})


@dataclass(frozen=True)
class Newest:
    """A zone's newest recorded input: its content records and when it was recorded."""

    records: frozenset[Record]
    at: float


def input_records(text: str, zone: str) -> frozenset[Record]:
    origin = dns.name.root if zone == "." else dns.name.from_text(zone)
    parsed = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    return _content(
        (name.to_text().lower(), ttl, dns.rdatatype.to_text(rd.rdtype), rd.to_text())
        for name, ttl, rd in parsed.iterate_rdatas()
    )


def copy_records(found: SourceFindings) -> frozenset[Record]:
    return _content(record_text(r) for r in found.data)


def _content(records: Iterable[tuple[str, int, str, str]]) -> frozenset[Record]:
    return frozenset((o.lower(), ttl, t, rd) for o, ttl, t, rd in records if t not in SKIPPED)


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m {s % 60}s"


def check_newest(
    copies: Sequence[SourceFindings], secondaries: Iterable[str], newest: Newest | None, report: ZoneReport,
    *, now: float, stale_after: float,
) -> None:  # fmt: skip
    """Each secondary's copy against the newest input: critical past `stale_after`, else info."""
    if newest is None:
        return
    wanted = set(secondaries)
    for found in copies:
        if found.name not in wanted:
            continue
        theirs = copy_records(found)
        if theirs == newest.records:
            continue
        missing, extra = len(newest.records - theirs), len(theirs - newest.records)
        age = now - newest.at
        what = (
            f"serves other data than the zone's newest input (recorded {_age(age)} ago; "
            f"{missing} of its records missing, {extra} other) at serial {found.serial}"
        )
        if age > stale_after:
            report.add("critical", found.name, f"{what}: older data for longer than {stale_after:.0f} s")
        else:
            report.add("info", found.name, f"{what}: within {stale_after:.0f} s, an update may be under way")
