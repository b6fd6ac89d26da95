"""One copy of a signed zone as records, and the facts about it that the checks need (pure).

Names are keyed by their canonical (lowercased) wire form; rdata stays bytes. Building this from
AXFR messages costs a few microseconds a record, where a dnspython zone costs tens.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from duo_ods.check.wire import (
    HEADER,
    RR_FIXED,
    Rrsig,
    WireError,
    label_bytes,
    name_text,
    parse_rrsig,
    read_name,
    read_rdata,
)

_RT = dns.rdatatype.RdataType

# Records only a signer makes; the rest is the zone's own (unsigned) data.
SIGNER_TYPES = frozenset({_RT.RRSIG, _RT.NSEC, _RT.NSEC3, _RT.NSEC3PARAM, _RT.DNSKEY})


class RRset:
    """The records of one owner and type: rdata as received (names uncompressed) and canonical."""

    __slots__ = ("canonical", "owner", "rdatas", "rdtype", "ttl")

    def __init__(self, owner: bytes, rdtype: int, ttl: int, rdata: bytes, canonical: bytes) -> None:
        self.owner = owner  # canonical wire
        self.rdtype = rdtype
        self.ttl = ttl
        self.rdatas = [rdata]
        self.canonical = [canonical]

    def to_dnspython(self, owner: bytes) -> dns.rrset.RRset:
        """As a dnspython RRset, with `owner` (the owner as received) for its name."""
        name = dns.name.from_wire(owner, 0)[0]
        rdatas = [
            dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType.make(self.rdtype), rd, 0, len(rd))
            for rd in self.rdatas
        ]
        return dns.rrset.from_rdata_list(name, self.ttl, rdatas)


class ZoneData:
    """A copy of a zone as it arrives: every record added once (duplicates ignored, as dnspython does)."""

    def __init__(self, origin: dns.name.Name) -> None:
        wire = origin.canonicalize().to_wire()
        assert wire is not None
        self.origin: bytes = wire
        self.names: dict[bytes, bytes] = {}  # canonical owner -> the owner as first received
        self.rrsets: dict[tuple[bytes, int], RRset] = {}
        self.rrsigs: list[Rrsig] = []
        self._sigs_seen: set[tuple[bytes, bytes]] = set()
        self.records = 0

    def add(self, owner: bytes, rdtype: int, ttl: int, rdata: bytes, canonical: bytes) -> None:
        self.records += 1
        key = owner.lower()
        if key not in self.names:
            self.names[key] = owner
        if rdtype == _RT.RRSIG:
            if (key, rdata) not in self._sigs_seen:
                self._sigs_seen.add((key, rdata))
                self.rrsigs.append(parse_rrsig(key, rdata))
            return
        rrset = self.rrsets.get((key, rdtype))
        if rrset is None:
            self.rrsets[key, rdtype] = RRset(key, rdtype, ttl, rdata, canonical)
            return
        rrset.ttl = min(rrset.ttl, ttl)
        if canonical not in rrset.canonical:
            rrset.rdatas.append(rdata)
            rrset.canonical.append(canonical)

    def add_message(self, wire: bytes, query_id: int | None = None) -> bool:
        """Add the answer records of one AXFR message; True when it holds the closing SOA."""
        msg_id, flags, qdcount, ancount, _ns, _ar = HEADER.unpack_from(wire, 0)
        if query_id is not None and msg_id != query_id:
            raise WireError("AXFR answer with the wrong message id")
        if flags & 0xF:
            raise dns.query.TransferError(dns.rcode.Rcode.make(flags & 0xF))  # type: ignore[no-untyped-call]
        cache: dict[int, bytes] = {}
        offset = HEADER.size
        for _ in range(qdcount):
            offset = read_name(wire, offset, cache)[1] + 4
        done = False
        for _ in range(ancount):
            if done:
                raise WireError("records after the closing SOA")
            owner, offset = read_name(wire, offset, cache)
            rdtype, rdclass, ttl, rdlen = RR_FIXED.unpack_from(wire, offset)
            offset += RR_FIXED.size
            if rdclass != dns.rdataclass.IN:
                raise WireError(f"record of class {dns.rdataclass.to_text(rdclass)}")
            rdata, canonical = read_rdata(wire, offset, rdlen, rdtype, cache)
            offset += rdlen
            if rdtype == _RT.SOA and owner.lower() == self.origin:
                opening = self.rrsets.get((self.origin, _RT.SOA))
                if opening is not None:  # the closing SOA
                    if canonical not in opening.canonical:
                        raise WireError("the closing SOA is not the opening one: the zone changed meanwhile")
                    done = True
                    continue
            elif not self.rrsets:
                raise WireError("first RRset is not an SOA")
            self.add(owner, rdtype, ttl, rdata, canonical)
        return done

    @classmethod
    def from_zone(cls, zone: dns.zone.Zone) -> ZoneData:
        """From a dnspython zone (absolute names), e.g. a zone file."""
        assert zone.origin is not None
        data = cls(zone.origin)
        for name, node in zone.nodes.items():
            owner = name.derelativize(zone.origin).to_wire()
            assert owner is not None
            for rdataset in node.rdatasets:
                for rd in rdataset:
                    wire = rd.to_wire()
                    digestable = wire if rdataset.rdtype == _RT.RRSIG else rd.to_digestable()
                    data.add(owner, rdataset.rdtype, rdataset.ttl, wire, digestable)
        return data


@dataclass
class ZoneView:
    """What the checks ask about one copy."""

    data: ZoneData
    delegations: set[bytes] = field(default_factory=set)
    occluded: set[bytes] = field(default_factory=set)  # below a delegation: glue and the like
    # Authoritative RRsets (what must be signed): not below a delegation; at one, only DS.
    signed_rrsets: list[RRset] = field(default_factory=list)
    nsec3: dict[bytes, RRset] = field(default_factory=dict)
    dnskeys: dns.rrset.RRset | None = None
    serial: int = 0

    @property
    def origin(self) -> bytes:
        return self.data.origin

    def text(self, name: bytes) -> str:
        """A name as received, as text."""
        return name_text(self.data.names.get(name, name))

    def covered(self, sig: Rrsig) -> RRset | None:
        return self.data.rrsets.get((sig.owner, sig.covered))


def parent(name: bytes) -> bytes:
    return name[name[0] + 1 :]


def ancestors(name: bytes, origin: bytes) -> list[bytes]:
    """The names between `name` and the apex (both left out); FormError when not in the zone."""
    found = []
    while name != origin:
        if name == b"\0":
            raise WireError("a record outside the zone")
        name = parent(name)
        if name != origin:
            found.append(name)
    return found


def analyse(data: ZoneData) -> ZoneView:
    origin = data.origin
    view = ZoneView(data)
    view.delegations = {o for o, t in data.rrsets if t == _RT.NS and o != origin}
    for name in data.names:
        # the usual case, a name one label below the apex, is quick
        if (
            name != origin
            and parent(name) != origin
            and any(a in view.delegations for a in ancestors(name, origin))
        ):
            view.occluded.add(name)
    for (owner, rdtype), rrset in data.rrsets.items():
        if rdtype == _RT.NSEC3:
            view.nsec3[owner] = rrset
        elif owner == origin and rdtype == _RT.DNSKEY:
            view.dnskeys = rrset.to_dnspython(data.names[owner])
        elif owner == origin and rdtype == _RT.SOA:
            view.serial = _serial(rrset.rdatas[0])
        if owner not in view.occluded and (owner not in view.delegations or rdtype in (_RT.DS, _RT.NSEC3)):
            view.signed_rrsets.append(rrset)
    return view


def _serial_at(soa: bytes) -> int:
    offset = len(label_bytes(soa, 0))
    return offset + len(label_bytes(soa, offset))


def _serial(soa: bytes) -> int:
    return int(struct.unpack_from("!I", soa, _serial_at(soa))[0])


def _without_serial(soa: bytes) -> bytes:
    at = _serial_at(soa)
    return soa[:at] + b"\0\0\0\0" + soa[at + 4 :]


def unsigned_records(view: ZoneView) -> frozenset[bytes]:
    """The zone's own records, SOA serial left out: what every signer got. Each record is
    owner (as received) + type + TTL + rdata (as received), wire."""
    records = set()
    names = view.data.names
    for (owner, rdtype), rrset in view.data.rrsets.items():
        if rdtype in SIGNER_TYPES:
            continue
        head = names[owner] + struct.pack("!HI", rdtype, rrset.ttl)
        for rdata in rrset.rdatas:
            records.add(head + (_without_serial(rdata) if rdtype == _RT.SOA else rdata))
    return frozenset(records)


def record_text(record: bytes) -> tuple[str, int, str, str]:
    """(owner, TTL, type, rdata) as text, from a record of unsigned_records."""
    owner = label_bytes(record, 0)
    rdtype, ttl = struct.unpack_from("!HI", record, len(owner))
    start = len(owner) + 6
    rdata = dns.rdata.from_wire(
        dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype), record, start, len(record) - start
    )
    return name_text(owner), ttl, dns.rdatatype.to_text(rdtype), rdata.to_text()
