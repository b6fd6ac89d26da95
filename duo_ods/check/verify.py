"""Signature verification: the signed data built from canonical bytes, public keys made once per
DNSKEY, and for RSASHA256 (8) and ECDSAP256SHA256 (13) `cryptography` called directly on a
SHA-256 digest. Other algorithms go through dnspython's validate_rrsig. Either way the outcome
and the reason given are dnspython's (RFC 4035 5.3)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import cast

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from duo_ods.check.wire import Rrsig, label_offsets
from duo_ods.check.zoneview import RRset

RSASHA256, ECDSAP256SHA256 = 8, 13
FAST_ALGORITHMS = frozenset({RSASHA256, ECDSAP256SHA256})
ZONE, REVOKE = 0x100, 0x80

_SHA256 = utils.Prehashed(hashes.SHA256())
_ECDSA = ec.ECDSA(_SHA256)
_PKCS1 = padding.PKCS1v15()

Verify = Callable[[bytes, bytes], bool]  # (signature, SHA-256 digest of the signed data) -> valid


def keyset_id(dnskeys: dns.rrset.RRset) -> str:
    """Identity of a DNSKEY RRset by content (owner and rdata, order-free)."""
    parts = sorted(rd.to_digestable(dnskeys.name) for rd in dnskeys)
    return hashlib.sha256(dnskeys.name.to_digestable() + b"".join(parts)).hexdigest()


def _ecdsa_p256(key: bytes) -> Verify | None:
    """As dnspython's PublicECDSA.from_dnskey and verify."""
    if len(key) < 64:
        return None
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(key[:32], "big"), int.from_bytes(key[32:64], "big"), ec.SECP256R1()
    )
    public = numbers.public_key()

    def verify(signature: bytes, digest: bytes) -> bool:
        if len(signature) != 64:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        public.verify(utils.encode_dss_signature(r, s), digest, _ECDSA)
        return True

    return verify


def _rsa(key: bytes) -> Verify | None:
    """As dnspython's PublicRSA.from_dnskey and verify (RFC 3110 2)."""
    if len(key) < 1:
        return None
    length, key = key[0], key[1:]
    if length == 0:
        if len(key) < 2:
            return None
        length, key = int.from_bytes(key[:2], "big"), key[2:]
    if len(key) < length:
        return None
    numbers = rsa.RSAPublicNumbers(int.from_bytes(key[:length], "big"), int.from_bytes(key[length:], "big"))
    public = numbers.public_key()

    def verify(signature: bytes, digest: bytes) -> bool:
        public.verify(signature, digest, _PKCS1, _SHA256)
        return True

    return verify


class Key:
    __slots__ = ("algorithm", "flags", "protocol", "rdata", "tag", "verify")

    def __init__(self, rdata: DNSKEY) -> None:
        self.rdata = rdata
        self.tag = dns.dnssec.key_id(rdata)
        self.algorithm = int(rdata.algorithm)
        self.flags = rdata.flags
        self.protocol = rdata.protocol
        self.verify: Verify | None = None
        if self.algorithm in FAST_ALGORITHMS and dns.dnssec.default_policy.ok_to_validate(rdata):
            make = _ecdsa_p256 if self.algorithm == ECDSAP256SHA256 else _rsa
            try:
                self.verify = make(rdata.key)
            except ValueError:  # dnspython: "invalid public key", that key fails
                self.verify = None


class KeySet:
    """A DNSKEY RRset, ready to verify signatures under."""

    def __init__(self, dnskeys: dns.rrset.RRset) -> None:
        self.rrset = dnskeys
        self.id = keyset_id(dnskeys)
        owner = dnskeys.name.canonicalize().to_wire()
        assert owner is not None
        self.owner = owner
        self.keys = [Key(cast(DNSKEY, rd)) for rd in dnskeys]
        self._candidates: dict[tuple[int, int, bool], list[Key]] = {}

    def candidates(self, sig: Rrsig) -> list[Key]:
        """As dnspython's _find_candidate_keys (RFC 4034 2.1.1 and 2.1.2, RFC 5011 2.1)."""
        which = (sig.algorithm, sig.key_tag, sig.covered == dns.rdatatype.DNSKEY)
        found = self._candidates.get(which)
        if found is None:
            found = self._candidates[which] = [
                k for k in self.keys
                if (k.algorithm, k.tag) == which[:2] and k.flags & ZONE and k.protocol == 3
                and (not k.flags & REVOKE or which[2])
            ]  # fmt: skip
        return found


class ValidationFailure(dns.exception.ValidationFailure):
    def __init__(self, message: str) -> None:
        super().__init__(message)  # type: ignore[no-untyped-call]


def signed_data(sig: Rrsig, rrset: RRset) -> bytes:
    """What the signature signs (RFC 4034 3.1.8.1), as dnspython's _make_rrsig_signature_data."""
    owner = rrset.owner
    offsets = label_offsets(owner)
    labels = len(offsets)
    if owner.startswith(b"\x01*") and sig.labels != labels - 1:
        raise ValidationFailure("wild owner name has wrong label length")
    if labels < sig.labels:
        raise ValidationFailure("owner name longer than RRSIG labels")
    if sig.labels < labels:
        owner = b"\x01*" + owner[offsets[labels - sig.labels] :]
    head = owner + struct.pack("!HHI", rrset.rdtype, dns.rdataclass.IN, sig.original_ttl)
    parts = [sig.rdata[:18], sig.signer]
    for rdata in sorted(rrset.canonical):
        parts += (head, len(rdata).to_bytes(2, "big"), rdata)
    return b"".join(parts)


def verify(sig: Rrsig, rrset: RRset, keys: KeySet, now: float) -> str | None:  # noqa: PLR0911
    """None when the signature over the RRset is valid under the key set, else why not
    (dnspython's words)."""
    if sig.algorithm not in FAST_ALGORITHMS:
        return _dnspython(sig, rrset, keys, now)
    if sig.covered != rrset.rdtype:
        return "RRSIG does not cover the RRset"
    if sig.signer != keys.owner:
        return "unknown key"
    candidates = keys.candidates(sig)
    if sig.expiration < now:
        return "expired"
    if sig.inception > now:
        return "not yet valid"
    try:
        digest = hashlib.sha256(signed_data(sig, rrset)).digest()
    except ValidationFailure as exc:
        return str(exc)
    for key in candidates:
        if key.verify is None:
            continue
        try:
            if key.verify(sig.signature, digest):
                return None
        except (InvalidSignature, ValueError):
            continue
    return "verify failure"


def _dnspython(sig: Rrsig, rrset: RRset, keys: KeySet, now: float) -> str | None:
    name = dns.name.from_wire(rrset.owner, 0)[0]
    rdatas = [
        dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType.make(rrset.rdtype), rd, 0, len(rd))
        for rd in rrset.rdatas
    ]
    rrsig = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RRSIG, sig.rdata, 0, len(sig.rdata))
    try:
        dns.dnssec.validate_rrsig(
            dns.rrset.from_rdata_list(name, rrset.ttl, rdatas),
            cast(RRSIG, rrsig),
            {keys.rrset.name: keys.rrset},
            now=now,
        )
    except dns.exception.ValidationFailure as exc:
        return str(exc)
    return None
