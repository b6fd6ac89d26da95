"""DNSKEY, key tag and DS from a public key (pure, dnspython)."""

from __future__ import annotations

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

ROLES = ("KSK", "ZSK", "CSK")
SEP = 257  # zone key + secure entry point: KSK and CSK
ZONE_KEY = 256  # DNSKEY flags: a zone key (RFC 4034 2.1.1)


def flags_for(role: str) -> int:
    return ZONE_KEY if role == "ZSK" else SEP


def make_dnskey(role: str, algorithm: int, public: bytes) -> DNSKEY:
    rdata = dns.rdata.from_wire(
        dns.rdataclass.IN,
        dns.rdatatype.DNSKEY,
        flags_for(role).to_bytes(2, "big") + bytes([3, algorithm]) + public,
        0,
        4 + len(public),
    )
    assert isinstance(rdata, DNSKEY)
    return rdata


def keytag(dnskey: DNSKEY) -> int:
    return int(dns.dnssec.key_id(dnskey))


def make_ds(
    zone: str | dns.name.Name, dnskey: DNSKEY, digest: str = "SHA256", *, validating: bool = False
) -> DS:
    """The DS for a DNSKEY: the one place ods-duo computes one. SHA-256 is what the parent
    publishes (`key ds`); `check --ds` recomputes with the given DS's digest type, `validating`
    (SHA-1 too) since it checks a DS the parent already has rather than making a new one."""
    owner = zone if isinstance(zone, dns.name.Name) else dns.name.from_text(zone)
    return dns.dnssec.make_ds(owner, dnskey, digest, validating=validating)
