"""DNS wire format, read fast enough for a 400k-record AXFR (pure).

Records are kept as bytes: owner names uncompressed in their original case, and each rdata
twice, as received (names uncompressed) and in canonical form (RFC 4034 6.2: names lowercased).
The two are the same object for types without names in their rdata. The few types whose layout
is read here are the hot ones of real zones; every other type with names goes through dnspython,
whose canonical form is the reference.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

_RT = dns.rdatatype.RdataType

# Types whose rdata holds no domain name: their wire form is their canonical form.
NO_NAMES = frozenset(
    {
        _RT.A, _RT.AAAA, _RT.TXT, _RT.SPF, _RT.DS, _RT.CDS, _RT.DNSKEY, _RT.CDNSKEY, _RT.NSEC3,
        _RT.NSEC3PARAM, _RT.TLSA, _RT.SMIMEA, _RT.SSHFP, _RT.CAA, _RT.OPENPGPKEY, _RT.ZONEMD,
    }
)  # fmt: skip
ONE_NAME = frozenset({_RT.NS, _RT.CNAME, _RT.PTR})  # rdata: a (compressible) name
PREFERENCE_NAME = frozenset({_RT.MX})  # rdata: 16-bit preference, (compressible) name

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdata length
# RRSIG rdata up to the signer: covered, algorithm, labels, original TTL, expiration, inception, tag
RRSIG_FIXED = struct.Struct("!HBBIIIH")
MAX_NAME = 255


class WireError(dns.exception.FormError):
    """Malformed DNS wire data."""

    def __init__(self, message: str) -> None:
        super().__init__(message)  # type: ignore[no-untyped-call]


def read_name(wire: bytes, offset: int, cache: dict[int, bytes]) -> tuple[bytes, int]:
    """The name at `offset` of a message, uncompressed (original case); and the offset after it.

    `cache` maps offsets of names already read in this message to their uncompressed form."""
    start = offset
    while True:
        length = wire[offset]
        if length == 0:
            offset += 1
            name = wire[start:offset]
            break
        if length >= 0xC0:
            pointer = ((length & 0x3F) << 8) | wire[offset + 1]
            if pointer >= start:
                raise WireError("DNS name compression pointer does not point back")
            tail = cache.get(pointer)
            if tail is None:
                tail = read_name(wire, pointer, cache)[0]
            name = wire[start:offset] + tail
            offset += 2
            break
        if length > 63:
            raise WireError("bad DNS label length")
        offset += length + 1
    if len(name) > MAX_NAME:
        raise WireError("DNS name longer than 255 octets")
    cache[start] = name
    return name, offset


def label_offsets(name: bytes) -> list[int]:
    """Where each label (but the root) starts in an uncompressed wire name."""
    offsets = []
    offset = 0
    while name[offset]:
        offsets.append(offset)
        offset += name[offset] + 1
    return offsets


def name_text(name: bytes) -> str:
    return dns.name.from_wire(name, 0)[0].to_text()


def read_rdata(
    wire: bytes, offset: int, rdlen: int, rdtype: int, cache: dict[int, bytes]
) -> tuple[bytes, bytes]:
    """The rdata at `offset` as (received form with names uncompressed, canonical form)."""
    end = offset + rdlen
    if end > len(wire):
        raise WireError("rdata runs past the end of the message")
    if rdtype in NO_NAMES:
        data = wire[offset:end]
        return data, data
    if rdtype in ONE_NAME or rdtype in PREFERENCE_NAME:
        head = 2 if rdtype in PREFERENCE_NAME else 0
        name, after = read_name(wire, offset + head, cache)
        if after != end or rdlen < head + 1:
            raise WireError(f"bad {dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))} rdata")
        prefix = wire[offset : offset + head]
        return prefix + name, prefix + name.lower()
    if rdtype == _RT.RRSIG:  # the signer is never compressed (RFC 4034 3.1.7), but be lenient
        if rdlen < RRSIG_FIXED.size + 1:
            raise WireError("RRSIG rdata too short")
        signer, after = read_name(wire, offset + RRSIG_FIXED.size, cache)
        if after > end:
            raise WireError("bad RRSIG rdata")
        data = wire[offset : offset + RRSIG_FIXED.size] + signer + wire[after:end]
        return data, data
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype), wire, offset, rdlen)
    return _to_wire(rdata), rdata.to_digestable()


def _to_wire(rdata: dns.rdata.Rdata) -> bytes:
    wire = rdata.to_wire()
    assert wire is not None
    return wire


class Rrsig(NamedTuple):
    """One RRSIG, its fields read from the rdata."""

    owner: bytes  # canonical
    rdata: bytes  # wire, signer uncompressed (received case)
    covered: int
    algorithm: int
    labels: int
    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    signer: bytes  # canonical
    signature: bytes


def parse_rrsig(owner: bytes, rdata: bytes) -> Rrsig:
    if len(rdata) < RRSIG_FIXED.size + 1:
        raise WireError("RRSIG rdata too short")
    signer = label_bytes(rdata, RRSIG_FIXED.size)
    signature = rdata[RRSIG_FIXED.size + len(signer) :]
    covered, algorithm, labels, ttl, expiration, inception, tag = RRSIG_FIXED.unpack_from(rdata, 0)
    return Rrsig(
        owner, rdata, covered, algorithm, labels, ttl, expiration, inception, tag, signer.lower(), signature
    )


def label_bytes(wire: bytes, offset: int) -> bytes:
    """The uncompressed name at `offset` (no pointers allowed)."""
    start = offset
    while True:
        if offset >= len(wire):
            raise WireError("name runs past the end of the rdata")
        length = wire[offset]
        if length > 63:
            raise WireError("bad or compressed name in rdata")
        offset += length + 1
        if length == 0:
            return wire[start:offset]


class Nsec3(NamedTuple):
    algorithm: int
    flags: int
    iterations: int
    salt: bytes
    next: bytes
    bitmap: bytes  # the type bitmap, as on the wire


def parse_nsec3(rdata: bytes) -> Nsec3:
    try:
        algorithm, flags, iterations, salt_len = struct.unpack_from("!BBHB", rdata, 0)
        salt = rdata[5 : 5 + salt_len]
        hash_len = rdata[5 + salt_len]
    except (struct.error, IndexError) as exc:
        raise WireError("NSEC3 rdata too short") from exc
    start = 6 + salt_len
    next_hash = rdata[start : start + hash_len]
    if len(salt) != salt_len or len(next_hash) != hash_len:
        raise WireError("NSEC3 rdata too short")
    return Nsec3(algorithm, flags, iterations, salt, next_hash, rdata[start + hash_len :])


def encode_bitmap(types: frozenset[int]) -> bytes:
    """A type bitmap (RFC 4034 4.1.2) as on the wire: windows in order, no trailing zero octets."""
    out = b""
    for window in sorted({t >> 8 for t in types}):
        bits = bytearray(32)
        for t in types:
            if t >> 8 == window:
                bits[(t & 0xFF) >> 3] |= 0x80 >> (t & 7)
        length = max(i for i, b in enumerate(bits) if b) + 1
        out += bytes((window, length)) + bytes(bits[:length])
    return out


def decode_bitmap(bitmap: bytes) -> set[int]:
    """The types of a wire type bitmap."""
    types: set[int] = set()
    offset = 0
    while offset < len(bitmap):
        if offset + 2 > len(bitmap):
            raise WireError("bad type bitmap")
        window, length = bitmap[offset], bitmap[offset + 1]
        block = bitmap[offset + 2 : offset + 2 + length]
        if not 1 <= length <= 32 or len(block) != length:
            raise WireError("bad type bitmap")
        for index, byte in enumerate(block):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + index * 8 + bit)
        offset += 2 + length
    return types
