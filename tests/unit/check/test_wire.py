"""Reading AXFR messages: the same records as dnspython reads, compression, TSIG, errors."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from duo_ods.check.sources import axfr, from_messages
from duo_ods.check.wire import WireError, label_offsets, read_name
from duo_ods.check.zoneview import ZoneData, analyse, ancestors, record_text, unsigned_records
from duo_ods.dns.tsig import TsigKey
from tests.unit.check.signer import ORIGIN, signed

KEY = TsigKey("duo-transfer", "hmac-sha256", "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IHNlY3JldCE=")
KEYRING = KEY.keyring()


def rrsets(zone: dns.zone.Zone) -> list[dns.rrset.RRset]:
    soa = zone.find_rrset(ORIGIN, dns.rdatatype.SOA)
    rest = [
        dns.rrset.from_rdata_list(name, rds.ttl, list(rds))
        for name, node in zone.nodes.items()
        for rds in node.rdatasets
        if rds.rdtype != dns.rdatatype.SOA
    ]
    return [soa, *rest, soa]


def messages(
    zone: dns.zone.Zone,
    per_message: int = 7,
    query: dns.message.Message | None = None,
    tsig: bool = False,
    sign_anyway: bool = False,
) -> list[bytes]:
    """The zone as an AXFR answer, split over messages (names compressed within each); signed
    (TSIG) when `tsig` and the query was, or `sign_anyway`."""
    query = query or dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    sets = rrsets(zone)
    out = []
    ctx = None
    for start in range(0, len(sets), per_message):
        response = dns.message.make_response(query)
        if start:
            response.question = []
        response.answer = sets[start : start + per_message]
        if sign_anyway:
            response.use_tsig(KEYRING)
        out.append(response.to_wire(multi=tsig, tsig_ctx=ctx))
        ctx = response.tsig_ctx
    return out


@pytest.fixture(scope="module")
def zone() -> dns.zone.Zone:
    z = signed()
    with z.writer() as txn:  # mixed case, and a type read through dnspython
        txn.add(
            dns.name.from_text("Upper.Example.TEST."),
            300,
            dns.rdata.from_text("IN", "CNAME", "WWW.example.test."),
        )
        txn.add(
            dns.name.from_text("srv.example.test."),
            300,
            dns.rdata.from_text("IN", "SRV", "0 0 53 NS1.example.test."),
        )
    return z


def same(a: ZoneData, b: ZoneData, case: bool = True) -> None:
    """The same records; with `case`, owner names as received too (compression may change the
    case of a name's tail: dnspython compresses case-insensitively)."""
    assert a.origin == b.origin
    assert a.names == b.names if case else a.names.keys() == b.names.keys()
    assert {k: (v.ttl, sorted(v.canonical)) for k, v in a.rrsets.items()} == {
        k: (v.ttl, sorted(v.canonical)) for k, v in b.rrsets.items()
    }
    for key, rrset in a.rrsets.items():  # as received: the same but for the case
        assert sorted(r.lower() for r in rrset.rdatas) == sorted(r.lower() for r in b.rrsets[key].rdatas)
    assert sorted(a.rrsigs) == sorted(b.rrsigs)


def test_messages_give_what_dnspython_gives(zone: dns.zone.Zone) -> None:
    wires = messages(zone)
    assert len(wires) > 3
    data = from_messages(wires, ORIGIN)
    same(data, ZoneData.from_zone(zone), case=False)
    assert data.records == sum(1 for _ in zone.iterate_rdatas())
    upper = b"\x05upper\x07example\x04test\x00"
    assert data.names[upper] == dns.name.from_text("Upper.Example.TEST").to_wire()  # the case as received
    assert data.rrsets[upper, dns.rdatatype.CNAME].rdatas[0].startswith(b"\x03WWW")
    via_dnspython = dns.zone.from_xfr((dns.message.from_wire(w, xfr=True) for w in wires), relativize=False)
    same(data, ZoneData.from_zone(via_dnspython))


def test_unsigned_records_as_text(zone: dns.zone.Zone) -> None:
    records = {record_text(r) for r in unsigned_records(analyse(ZoneData.from_zone(zone)))}
    assert (
        "example.test.",
        300,
        "SOA",
        "ns1.example.test. hostmaster.example.test. 0 3600 600 864000 300",
    ) in records
    assert ("Upper.Example.TEST.", 300, "CNAME", "WWW.example.test.") in records
    assert not any(t in ("RRSIG", "NSEC3", "DNSKEY", "NSEC3PARAM") for _o, _t2, t, _r in records)


def test_names() -> None:
    wire = b"\x00" * 12 + b"\x03www\x07example\x04test\x00" + b"\x04mail\xc0\x10" + b"\xc0\x0c"
    cache: dict[int, bytes] = {}
    assert read_name(wire, 12, cache) == (b"\x03www\x07example\x04test\x00", 30)
    assert read_name(wire, 30, cache) == (b"\x04mail\x07example\x04test\x00", 37)
    assert read_name(wire, 37, cache)[0] == b"\x03www\x07example\x04test\x00"
    with pytest.raises(WireError):
        read_name(b"\x00" * 12 + b"\xc0\x0c", 12, {})  # points at itself
    with pytest.raises(WireError):
        read_name(b"\x00" * 12 + b"\x40" + b"a" * 64 + b"\x00", 12, {})  # label too long
    with pytest.raises(WireError):
        read_name(b"\x00" * 12 + b"\x3f" + b"a" * 63 + b"\xc0\x0c", 12, {})  # loops
    name = b"\x03www\x07example\x04test\x00"
    assert label_offsets(name) == [0, 4, 12]
    assert ancestors(b"\x01a\x03www\x07example\x04test\x00", b"\x07example\x04test\x00") == [name]
    with pytest.raises(dns.exception.FormError):
        ancestors(b"\x03www\x05other\x00", b"\x07example\x04test\x00")


def test_bad_transfers(zone: dns.zone.Zone) -> None:
    wires = messages(zone)
    with pytest.raises(dns.exception.FormError, match="first RRset is not an SOA"):
        from_messages(wires[1:], ORIGIN)
    refused = dns.message.make_response(dns.message.make_query(ORIGIN, dns.rdatatype.AXFR))
    refused.set_rcode(dns.rcode.REFUSED)
    with pytest.raises(dns.exception.DNSException, match="REFUSED"):
        from_messages([refused.to_wire()], ORIGIN)
    changed = dns.message.from_wire(wires[-1])
    soa = changed.answer[-1]
    changed.answer[-1] = dns.rrset.from_text(
        soa.name, soa.ttl, "IN", "SOA", soa[0].replace(serial=7).to_text()
    )
    with pytest.raises(dns.exception.FormError, match="the closing SOA is not the opening one"):
        from_messages([*wires[:-1], changed.to_wire()], ORIGIN)
    with pytest.raises(dns.exception.FormError, match="past the end"):
        from_messages([wires[0][:-3]], ORIGIN)
    with pytest.raises(dns.exception.FormError, match="malformed"):
        from_messages([wires[0][:20]], ORIGIN)
    inside = dns.zone.from_text("@ 300 IN SOA a b 1 2 3 4 5\n@ 300 IN NS a\n", ORIGIN, relativize=False)
    outside = dns.message.make_response(dns.message.make_query(ORIGIN, dns.rdatatype.AXFR))
    outside.answer = [
        *rrsets(inside)[:-1],
        dns.rrset.from_text("www.other.test.", 300, "IN", "A", "192.0.2.1"),
    ]
    with pytest.raises(dns.exception.FormError, match="outside the zone"):
        analyse(from_messages([outside.to_wire()], ORIGIN))


class Server:
    """A one-shot AXFR server on localhost: answers the request with what `answer` makes of it."""

    def __init__(self, answer: Callable[[dns.message.Message], list[bytes]]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            size = struct.unpack("!H", conn.recv(2))[0]
            wire = b""
            while len(wire) < size:
                wire += conn.recv(size - len(wire))
            query = dns.message.from_wire(wire, keyring=KEYRING)
            try:
                for out in self.answer(query):
                    conn.sendall(struct.pack("!H", len(out)) + out)
            except OSError:
                pass  # the client gave up

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[dns.message.Message], list[bytes]]], Server]]:
    servers: list[Server] = []

    def start(answer: Callable[[dns.message.Message], list[bytes]]) -> Server:
        servers.append(Server(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_axfr_with_tsig(zone: dns.zone.Zone, serve: Callable[..., Server]) -> None:
    server = serve(lambda q: messages(zone, query=q, tsig=True))
    wires, data = axfr("127.0.0.1", server.port, ORIGIN, KEY, timeout=10)
    assert len(wires) > 3
    same(data, ZoneData.from_zone(zone), case=False)


def test_axfr_tampered_or_unsigned(zone: dns.zone.Zone, serve: Callable[..., Server]) -> None:
    def tampered(q: dns.message.Message) -> list[bytes]:
        out = messages(zone, query=q, tsig=True)
        flipped = bytearray(out[1])
        flipped[len(flipped) // 2] ^= 0x01
        out[1] = bytes(flipped)
        return out

    server = serve(tampered)
    with pytest.raises(dns.exception.DNSException):
        axfr("127.0.0.1", server.port, ORIGIN, KEY, timeout=10)
    server = serve(lambda q: messages(zone, query=unsigned(q)))
    with pytest.raises(dns.exception.FormError, match="not signed"):
        axfr("127.0.0.1", server.port, ORIGIN, KEY, timeout=10)
    server = serve(lambda q: messages(zone, query=q, tsig=True, sign_anyway=True))
    with pytest.raises(dns.exception.DNSException, match="without keyring"):
        axfr("127.0.0.1", server.port, ORIGIN, None, timeout=10)


def unsigned(query: dns.message.Message) -> dns.message.Message:
    """The query as if it had come without TSIG: the answers to it are not signed."""
    plain = dns.message.make_query(ORIGIN, dns.rdatatype.AXFR)
    plain.id = query.id
    return plain


def test_axfr_without_tsig_and_timeout(zone: dns.zone.Zone, serve: Callable[..., Server]) -> None:
    server = serve(lambda q: messages(zone, query=q))
    _wires, data = axfr("127.0.0.1", server.port, ORIGIN, None, timeout=10)
    same(data, ZoneData.from_zone(zone), case=False)
    server = serve(lambda q: messages(zone, query=q)[:2])  # stops halfway
    with pytest.raises((dns.exception.Timeout, EOFError)):
        axfr("127.0.0.1", server.port, ORIGIN, None, timeout=2)
    assert dns.rdataclass.IN  # keep the import used
