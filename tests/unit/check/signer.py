"""A tiny NSEC3 signer for tests (dnspython's sign_zone has no NSEC3): zones signed like ODS signs
them, with keys made by `cryptography`, so the checks can run without a lab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dns.rdtypes.ANY.DNSKEY import DNSKEY

ORIGIN = dns.name.from_text("example.test")
NOW = 1_800_000_000
TEXT = """
@       300 IN SOA ns1 hostmaster 2026112801 3600 600 864000 300
@       300 IN NS  ns1
@       300 IN MX  10 mail
ns1     300 IN A   192.0.2.53
mail    300 IN A   192.0.2.25
www     300 IN A   192.0.2.80
www     300 IN AAAA 2001:db8::80
a.b.deep 300 IN TXT "below an empty non-terminal"
*.wild  300 IN TXT "wildcard"
child   300 IN NS  ns.child
child   300 IN DS  12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns.child 300 IN A  192.0.2.99
insecure 300 IN NS ns.example.net.
"""


@dataclass
class Key:
    private: Any
    dnskey: dns.rdata.Rdata

    @classmethod
    def make(cls, algorithm: int = 13, flags: int = 256) -> Key:
        private: Any
        if algorithm == 13:
            private = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == 8:
            private = rsa.generate_private_key(65537, 2048)
        elif algorithm == 15:
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(algorithm)
        return cls(private, dns.dnssec.make_dnskey(private.public_key(), algorithm, flags))

    @property
    def tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)  # type: ignore[arg-type]


def sign_rrset(
    rrset: dns.rrset.RRset, key: Key, now: int = NOW, lifetime: int = 14 * 86400
) -> dns.rdata.Rdata:
    dnskey = key.dnskey
    assert isinstance(dnskey, DNSKEY)
    # Not deterministic (RFC 6979): two signers' ECDSA signatures over the same data differ.
    return dns.dnssec.sign(
        rrset,
        key.private,
        ORIGIN,
        dnskey,
        inception=now - 3600,
        expiration=now + lifetime,
        deterministic=False,
    )


def _below(name: dns.name.Name, parents: set[dns.name.Name]) -> bool:
    return any(name != p and name.is_subdomain(p) for p in parents)


def signed(
    text: str = TEXT,
    ksk: Key | None = None,
    zsk: Key | None = None,
    extra_keys: tuple[Key, ...] = (),
    salt: bytes = b"\xab\xcd",
    iterations: int = 0,
    opt_out: bool = False,
    now: int = NOW,
) -> dns.zone.Zone:
    """The zone signed with NSEC3 as ODS does: DNSKEYs (plus extra_keys, published only) signed by
    the KSK, the rest by the ZSK; no signatures on delegation NS or glue."""
    ksk = ksk or Key.make(flags=257)
    zsk = zsk or Key.make()
    zone = dns.zone.from_text(text, ORIGIN, relativize=False)
    with zone.writer() as txn:
        for key in (ksk, zsk, *extra_keys):
            txn.add(ORIGIN, 300, key.dnskey)
        txn.add(ORIGIN, 0, dns.rdata.from_text("IN", "NSEC3PARAM", f"1 0 {iterations} {salt.hex() or '-'}"))
    delegations = {
        n
        for n, node in zone.nodes.items()
        if n != ORIGIN and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
    }
    occluded = {n for n in zone.nodes if _below(n, delegations)}
    expected: dict[dns.name.Name, set[int]] = {}
    for name, node in zone.nodes.items():
        if name in occluded:
            continue
        types = {rds.rdtype for rds in node.rdatasets}
        if name in delegations:
            types &= {dns.rdatatype.NS, dns.rdatatype.DS}
            if dns.rdatatype.DS not in types and opt_out:
                continue
        types.add(dns.rdatatype.RRSIG)
        if name in delegations and dns.rdatatype.DS not in types:
            types.discard(dns.rdatatype.RRSIG)
        expected[name] = types
        parent = name
        while parent != ORIGIN:
            parent = parent.parent()
            expected.setdefault(parent, set())
    hashed = sorted(
        (dns.dnssec.nsec3_hash(name, salt, iterations, 1).lower(), types) for name, types in expected.items()
    )
    with zone.writer() as txn:
        for i, (label, types) in enumerate(hashed):
            following = hashed[(i + 1) % len(hashed)][0]
            bitmap = " ".join(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t)) for t in sorted(types))
            rdata = f"1 {int(opt_out)} {iterations} {salt.hex() or '-'} {following} {bitmap}"
            txn.add(
                dns.name.Name([label.encode(), *ORIGIN.labels]),
                300,
                dns.rdata.from_text("IN", "NSEC3", rdata),
            )
    with zone.writer() as txn:
        for name, node in list(zone.nodes.items()):
            if name in occluded:
                continue
            for rds in list(node.rdatasets):
                if name in delegations and rds.rdtype != dns.rdatatype.DS:
                    continue
                key = ksk if rds.rdtype == dns.rdatatype.DNSKEY else zsk
                rrset = dns.rrset.from_rdata_list(name, rds.ttl, list(rds))
                txn.add(name, rds.ttl, sign_rrset(rrset, key, now))
    return zone


def nsec3_owner(name: str, salt: bytes = b"\xab\xcd") -> dns.name.Name:
    label = dns.dnssec.nsec3_hash(dns.name.from_text(name), salt, 0, 1).lower()
    return dns.name.Name([label.encode(), *ORIGIN.labels])
