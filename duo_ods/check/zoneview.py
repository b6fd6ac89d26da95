"""The facts about one copy of a signed zone that the checks need, computed once (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.name
import dns.node
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from dns.rdtypes.ANY.RRSIG import RRSIG

# Records only a signer makes; the rest is the zone's own (unsigned) data.
SIGNER_TYPES = frozenset(
    {
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.DNSKEY,
    }
)


@dataclass
class ZoneView:
    origin: dns.name.Name
    zone: dns.zone.Zone
    delegations: set[dns.name.Name] = field(default_factory=set)
    occluded: set[dns.name.Name] = field(default_factory=set)  # below a delegation: glue and the like
    # Authoritative RRsets (what must be signed): not below a delegation; at one, only DS.
    signed_rrsets: list[dns.rrset.RRset] = field(default_factory=list)
    # Every RRSIG with the RRset it covers (None when that RRset is missing).
    rrsigs: list[tuple[dns.rrset.RRset | None, RRSIG, dns.name.Name]] = field(default_factory=list)
    nsec3: dict[dns.name.Name, dns.rrset.RRset] = field(default_factory=dict)
    dnskeys: dns.rrset.RRset | None = None
    serial: int = 0


def _under(name: dns.name.Name, parents: set[dns.name.Name]) -> bool:
    return any(name != p and name.is_subdomain(p) for p in parents)


def _delegations(zone: dns.zone.Zone, origin: dns.name.Name) -> set[dns.name.Name]:
    return {
        name.derelativize(origin)
        for name, node in zone.nodes.items()
        if name.derelativize(origin) != origin
        and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is not None
    }


def analyse(zone: dns.zone.Zone) -> ZoneView:
    origin = zone.origin
    assert origin is not None
    view = ZoneView(origin=origin, zone=zone, delegations=_delegations(zone, origin))
    for name, node in zone.nodes.items():
        absolute = name.derelativize(origin)
        below = _under(absolute, view.delegations)
        if below:
            view.occluded.add(absolute)
        for rdataset in node.rdatasets:
            rrset = dns.rrset.from_rdata_list(absolute, rdataset.ttl, list(rdataset))
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                continue
            if rdataset.rdtype == dns.rdatatype.NSEC3:
                view.nsec3[absolute] = rrset
            if rdataset.rdtype == dns.rdatatype.DNSKEY and absolute == origin:
                view.dnskeys = rrset
            if rdataset.rdtype == dns.rdatatype.SOA and absolute == origin:
                view.serial = int(rdataset[0].serial)
            at_delegation = absolute in view.delegations
            if not below and (
                not at_delegation or rdataset.rdtype in (dns.rdatatype.DS, dns.rdatatype.NSEC3)
            ):
                view.signed_rrsets.append(rrset)
        _collect_rrsigs(view, absolute, node)
    return view


def _collect_rrsigs(view: ZoneView, owner: dns.name.Name, node: dns.node.Node) -> None:
    for rdataset in node.rdatasets:
        if rdataset.rdtype != dns.rdatatype.RRSIG:
            continue
        covered = node.get_rdataset(dns.rdataclass.IN, rdataset.covers)
        rrset = dns.rrset.from_rdata_list(owner, covered.ttl, list(covered)) if covered else None
        for sig in rdataset:
            assert isinstance(sig, RRSIG)
            view.rrsigs.append((rrset, sig, owner))


def unsigned_data(view: ZoneView) -> set[tuple[str, int, str, str]]:
    """The zone's own records (owner, TTL, type, rdata), SOA serial left out: what every signer got."""
    records: set[tuple[str, int, str, str]] = set()
    for name, ttl, rdata in view.zone.iterate_rdatas():
        if rdata.rdtype in SIGNER_TYPES:
            continue
        text = rdata.to_text()
        if rdata.rdtype == dns.rdatatype.SOA:
            text = rdata.replace(serial=0).to_text()
        records.add(
            (name.derelativize(view.origin).to_text(), ttl, dns.rdatatype.to_text(rdata.rdtype), text)
        )
    return records


def bitmap_types(windows: tuple[tuple[int, bytes], ...]) -> set[int]:
    """Decode an NSEC/NSEC3 type bitmap into rdtypes."""
    types: set[int] = set()
    for window, bitmap in windows:
        for index, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + index * 8 + bit)
    return types
