"""A zone's content as the duo compares it: the data without what each signer makes on its own.

Two signers sign independently, so their RRSIGs, NSEC/NSEC3 chains and SOA serials differ by
design; what must be the same is the rest. The content digest covers every RRset except
RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY and the SOA (its serial is the signer's, and its TTL and
minimum come from the policy). DS at delegations and CDS/CDNSKEY at the apex are content.

The rule this serves (duo_ods.zones.catchup): two copies with the same serial carry the same
content digest, and no copy with older content outranks newer content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.query
import dns.rdatatype
import dns.zone

from duo_ods.dns.tsig import TsigKey

SIGNER_MADE = frozenset(
    {
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.SOA,
    }
)


@dataclass(frozen=True)
class Copy:
    """What one server (signer or secondary) serves for a zone."""

    serial: int
    digest: str


def _origin(zone: str) -> dns.name.Name:
    return dns.name.root if zone == "." else dns.name.from_text(zone)


def content_digest(z: dns.zone.Zone) -> str:
    """sha256 over the sorted RRs that are not signer-made (names absolute, TTLs included)."""
    origin = z.origin if z.origin is not None else dns.name.root
    lines = []
    for name, ttl, rdata in z.iterate_rdatas():
        if rdata.rdtype in SIGNER_MADE:
            continue
        absolute = name.derelativize(origin)
        lines.append(f"{absolute.to_text()} {ttl} {dns.rdatatype.to_text(rdata.rdtype)} {rdata.to_text()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def text_content_digest(text: str, zone: str) -> str:
    """The content digest of a zone's input text (the checked text a node signs)."""
    z = dns.zone.from_text(text, origin=_origin(zone), relativize=False, check_origin=False)
    return content_digest(z)


def served_copy(
    address: str, port: int, zone: str, key: TsigKey | None, timeout: float = 10.0
) -> Copy | None:
    """The serial and content digest a server serves now, by AXFR; None when it does not answer."""
    keyring, keyname = (key.keyring(), key.name) if key else (None, None)
    try:
        messages = dns.query.xfr(
            address, _origin(zone), port=port, lifetime=timeout, relativize=False,
            keyring=keyring, keyname=keyname,
        )  # fmt: skip
        z = dns.zone.from_xfr(messages, relativize=False)
    except (dns.exception.DNSException, OSError, EOFError):
        return None
    soa = z.get_rdataset(_origin(zone), dns.rdatatype.SOA)
    if soa is None:
        return None
    return Copy(int(soa[0].serial), content_digest(z))
