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
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.zone

from duo_ods.bind.tsig import TsigKey
from duo_ods.check.wire import HEADER, RR_FIXED, WireError, read_name
from duo_ods.check.zoneview import ZoneData, ZoneView, analyse

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


def load(source: Source, zone: str) -> tuple[Raw, ZoneView]:
    """The copy of the zone from the source, as it came and analysed; SourceError when there is none."""
    origin = dns.name.from_text(zone)
    if isinstance(source, AxfrSource):
        try:
            messages, data = axfr(source.address, source.port, origin, source.tsig)
            return messages, analyse(data)
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            why = f"no AXFR of {zone} from {source.address} port {source.port}: {exc or type(exc).__name__}"
            raise SourceError(why) from exc
    try:
        text = source.path.read_text()
        return text, analyse(from_text(text, origin))
    except (dns.exception.DNSException, OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {source.path} as zone {zone}: {exc}") from exc


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


def _read_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout
        sock.settimeout(left)
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError
        got += n
    return bytes(buffer)


def axfr(
    address: str, port: int, origin: dns.name.Name, tsig: TsigKey | None = None, timeout: float = AXFR_TIMEOUT
) -> tuple[list[bytes], ZoneData]:
    """The AXFR messages of the zone, and what they hold, checked to start and end with the SOA.
    With a transfer key the request is signed, and so must be the first and last answers."""
    request = dns.message.make_query(origin, dns.rdatatype.AXFR, dns.rdataclass.IN)
    if tsig is not None:
        request.use_tsig(tsig.keyring(), dns.name.from_text(tsig.name))
    query = request.to_wire()
    checker = _Tsig(tsig, request)
    deadline = time.monotonic() + timeout
    messages: list[bytes] = []
    data = ZoneData(origin)  # parsed as it comes, to see the closing SOA
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except TimeoutError as exc:
        raise dns.exception.Timeout from exc
    with sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        done = False
        while not done:
            (size,) = struct.unpack("!H", _read_exactly(sock, 2, deadline))
            wire = _read_exactly(sock, size, deadline)
            with _malformed():
                checker.check(wire)
                done = data.add_message(wire, request.id)
            messages.append(wire)
    if tsig is not None and checker.last_signed != len(messages) - 1:
        raise WireError("the last answer is not signed with the transfer key")
    return messages, data


def parse_source(spec: str) -> tuple[str, int] | Path:
    """'ADDR:PORT' (or '[v6]:PORT') for a live server, anything else is a file."""
    host, sep, port = spec.rpartition(":")
    if sep and port.isdigit() and host and not Path(spec).exists():
        return host.strip("[]"), int(port)
    return Path(spec)
