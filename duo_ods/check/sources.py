"""Getting copies of a zone: AXFR from a signer or secondary, or a saved zone file.

The AXFR is read here rather than through dns.query.xfr: dnspython makes an object of every
record of every message, which for a 400k-record zone costs far more than the checks need.
The request and the TSIG checks of the answers (RFC 8945 5.3.1) are still dnspython's.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.zone

from duo_ods.check.wire import HEADER, RR_FIXED, WireError, read_name
from duo_ods.check.zoneview import ZoneData, ZoneView, analyse
from duo_ods.dns.tsig import TsigKey

AXFR_TIMEOUT = 30.0

# What a source gave, kept to read it again: the AXFR messages, or a zone file's text.
Raw = list[bytes] | str


@dataclass(frozen=True)
class AxfrSource:
    name: str
    address: str
    port: int
    tsig: TsigKey | None = None


@dataclass(frozen=True)
class FileSource:
    name: str
    path: Path


Source = AxfrSource | FileSource


class SourceError(Exception):
    """A copy that could not be had; the message says why."""


class SourceTimeout(SourceError):
    """The server stayed silent for longer than the timeout (a hung server accepts the connection
    and never answers)."""


def failure(source: Source, zone: str) -> str:
    """How a failure to get the copy starts: the reason follows."""
    if isinstance(source, AxfrSource):
        return f"no AXFR of {zone} from {source.address} port {source.port}"
    return f"cannot read {source.path} as zone {zone}"


def fetch(source: Source, zone: str, timeout: float = AXFR_TIMEOUT) -> Raw:
    """The copy as it comes, not read yet (see read): the AXFR messages, or the file's text.
    SourceTimeout when the server stayed silent for `timeout` seconds, SourceError otherwise."""
    origin = dns.name.from_text(zone)
    if isinstance(source, AxfrSource):
        try:
            return axfr_messages(source.address, source.port, origin, source.tsig, timeout)
        except dns.exception.Timeout as exc:
            raise SourceTimeout(f"{failure(source, zone)}: no answer within {timeout:g} s") from exc
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            raise SourceError(f"{failure(source, zone)}: {exc or type(exc).__name__}") from exc
    try:
        return source.path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{failure(source, zone)}: {exc}") from exc


def read(raw: Raw, zone: str, why: str = "") -> ZoneView:
    """What a fetched copy holds, analysed; SourceError (starting with `why`) when it is not a
    valid copy of the zone."""
    try:
        return reload(raw, zone)
    except (dns.exception.DNSException, EOFError) as exc:
        raise SourceError(f"{why or 'bad copy'}: {exc or type(exc).__name__}") from exc


def load(source: Source, zone: str, timeout: float = AXFR_TIMEOUT) -> tuple[Raw, ZoneView]:
    """The copy of the zone from the source, as it came and analysed; SourceError when there is none."""
    raw = fetch(source, zone, timeout)
    return raw, read(raw, zone, failure(source, zone))


def reload(raw: Raw, zone: str) -> ZoneView:
    """The same copy again, from what load() returned."""
    origin = dns.name.from_text(zone)
    return analyse(from_messages(raw, origin) if isinstance(raw, list) else from_text(raw, origin))


def from_text(text: str, origin: dns.name.Name) -> ZoneData:
    return ZoneData.from_zone(dns.zone.from_text(text, origin=origin, relativize=False))


def from_messages(messages: list[bytes], origin: dns.name.Name) -> ZoneData:
    data = ZoneData(origin)
    for wire in messages:
        with _malformed():
            data.add_message(wire)
    return data


@contextmanager
def _malformed() -> Iterator[None]:
    """A message cut short shows as reading past its end: a FormError like any other."""
    try:
        yield
    except (struct.error, IndexError) as exc:
        raise WireError(f"malformed AXFR message: {exc}") from exc


class _Tsig:
    """The TSIG checks of the answers to a signed request (as dnspython's message reader does)."""

    def __init__(self, key: TsigKey | None, request: dns.message.Message) -> None:
        self.keyring = key.keyring() if key else None
        self.request_mac = request.mac
        self.ctx: dns.tsig.HMACTSig | dns.tsig.GSSTSig | None = None
        self.seen = 0
        self.last_signed = -1  # the index of the last signed answer

    def check(self, wire: bytes) -> None:
        """Validate the next answer's TSIG, or feed an unsigned one to the running MAC."""
        self.seen += 1
        found = _find_tsig(wire)
        if found is None:
            if self.keyring is not None and self.seen == 1:
                raise WireError("the answer is not signed with the transfer key")
            if self.ctx is not None:
                self.ctx.update(wire)  # type: ignore[no-untyped-call]
            return
        owner, rdata, start = found
        if self.keyring is None:
            raise dns.message.UnknownTSIGKey("got signed message without keyring")  # type: ignore[no-untyped-call]
        key = self.keyring.get(owner)
        if key is None:
            raise dns.message.UnknownTSIGKey(f"key '{owner}' unknown")  # type: ignore[no-untyped-call]
        self.ctx = dns.tsig.validate(  # type: ignore[no-untyped-call]
            wire, key, owner, rdata, int(time.time()), self.request_mac, start, self.ctx, True
        )
        self.last_signed = self.seen - 1


def _find_tsig(wire: bytes) -> tuple[dns.name.Name, dns.rdata.Rdata, int] | None:
    """The TSIG record (the last of the additional section): owner, rdata, where it starts."""
    _id, _flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(wire, 0)
    if arcount == 0:
        return None
    cache: dict[int, bytes] = {}
    offset = HEADER.size
    for _ in range(qdcount):
        offset = read_name(wire, offset, cache)[1] + 4
    for index in range(ancount + nscount + arcount):
        start = offset
        offset = read_name(wire, offset, cache)[1]
        rdtype, rdclass, _ttl, rdlen = RR_FIXED.unpack_from(wire, offset)
        offset += RR_FIXED.size
        if rdtype == dns.rdatatype.TSIG:
            if index != ancount + nscount + arcount - 1:
                raise WireError("TSIG is not the last record")
            owner = dns.name.from_wire(wire, start)[0]
            return owner, dns.rdata.from_wire(rdclass, rdtype, wire, offset, rdlen), start
        offset += rdlen
    return None


def _read_exactly(sock: socket.socket, size: int, silence: float) -> bytes:
    """`size` bytes; a server that sends nothing for `silence` seconds has timed out."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    sock.settimeout(silence)
    while got < size:
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError as exc:
            raise dns.exception.Timeout from exc
        if n == 0:
            raise EOFError
        got += n
    return bytes(buffer)


def _skip_name(wire: bytes, offset: int) -> int:
    while True:
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length >= 0xC0:
            return offset + 2
        offset += length + 1


def apex_soas(wire: bytes, origin: bytes, query_id: int) -> int:
    """How many SOA records of the zone's apex an AXFR answer holds (the second one closes the
    transfer). Only walks the records: the full reading is done where the copy is checked."""
    msg_id, flags, qdcount, ancount, _ns, _ar = HEADER.unpack_from(wire, 0)
    if msg_id != query_id:
        raise WireError("AXFR answer with the wrong message id")
    if flags & 0xF:
        raise dns.query.TransferError(dns.rcode.Rcode.make(flags & 0xF))  # type: ignore[no-untyped-call]
    offset = HEADER.size
    for _ in range(qdcount):
        offset = _skip_name(wire, offset) + 4
    found = 0
    for _ in range(ancount):
        start = offset
        offset = _skip_name(wire, offset)
        rdtype, _class, _ttl, rdlen = RR_FIXED.unpack_from(wire, offset)
        offset += RR_FIXED.size + rdlen
        if rdtype == dns.rdatatype.SOA and read_name(wire, start, {})[0].lower() == origin:
            found += 1
    if offset > len(wire):
        raise WireError("malformed AXFR message: records run past its end")
    return found


def axfr_messages(
    address: str, port: int, origin: dns.name.Name, tsig: TsigKey | None = None, timeout: float = AXFR_TIMEOUT
) -> list[bytes]:
    """The AXFR messages of the zone, up to the closing SOA, unread (see from_messages). With a
    transfer key the request is signed, and so must be the first and last answers. `timeout`: how
    long the server may stay silent (to connect, to answer, between messages), not a limit on the
    whole transfer, so a large zone that keeps coming is not cut short."""
    request = dns.message.make_query(origin, dns.rdatatype.AXFR, dns.rdataclass.IN)
    if tsig is not None:
        request.use_tsig(tsig.keyring(), dns.name.from_text(tsig.name))
    query = request.to_wire()
    checker = _Tsig(tsig, request)
    apex = origin.canonicalize().to_wire()
    assert apex is not None
    messages: list[bytes] = []
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except TimeoutError as exc:
        raise dns.exception.Timeout from exc
    with sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        soas = 0
        while soas < 2:
            (size,) = struct.unpack("!H", _read_exactly(sock, 2, timeout))
            wire = _read_exactly(sock, size, timeout)
            with _malformed():
                checker.check(wire)
                soas += apex_soas(wire, apex, request.id)
            messages.append(wire)
    if tsig is not None and checker.last_signed != len(messages) - 1:
        raise WireError("the last answer is not signed with the transfer key")
    return messages


def axfr(
    address: str, port: int, origin: dns.name.Name, tsig: TsigKey | None = None, timeout: float = AXFR_TIMEOUT
) -> tuple[list[bytes], ZoneData]:
    """The AXFR messages of the zone and what they hold, checked to start and end with the SOA."""
    messages = axfr_messages(address, port, origin, tsig, timeout)
    return messages, from_messages(messages, origin)


def parse_source(spec: str) -> tuple[str, int] | Path:
    """'ADDR:PORT' (or '[v6]:PORT') for a live server, anything else is a file."""
    host, sep, port = spec.rpartition(":")
    if sep and port.isdigit() and host and not Path(spec).exists():
        return host.strip("[]"), int(port)
    return Path(spec)
