"""The direct verification agrees with dnspython's validate_rrsig, reason included."""

from __future__ import annotations

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from dns.rdtypes.ANY.RRSIG import RRSIG

from duo_ods.check.verify import KeySet, signed_data, verify
from duo_ods.check.wire import Rrsig, parse_rrsig
from duo_ods.check.zoneview import RRset
from tests.unit.check.signer import NOW, ORIGIN, Key, sign_rrset


def ours(rrset: dns.rrset.RRset) -> RRset:
    wires = [rd.to_wire() for rd in rrset]
    owner = rrset.name.canonicalize().to_wire()
    assert owner is not None and all(w is not None for w in wires)
    mine = RRset(owner, rrset.rdtype, rrset.ttl, b"", b"")
    mine.rdatas = [w for w in wires if w is not None]
    mine.canonical = [rd.to_digestable() for rd in rrset]
    return mine


def rrsig(owner: dns.name.Name, sig: dns.rdata.Rdata) -> Rrsig:
    wire = sig.to_wire()
    key = owner.canonicalize().to_wire()
    assert wire is not None and key is not None
    return parse_rrsig(key, wire)


def dnspython_says(
    rrset: dns.rrset.RRset, sig: dns.rdata.Rdata, keys: dns.rrset.RRset, now: float
) -> str | None:
    try:
        dns.dnssec.validate_rrsig(rrset, sig, {keys.name: keys}, now=now)  # type: ignore[arg-type]
    except dns.exception.ValidationFailure as exc:
        return str(exc)
    return None


def keyset(*keys: Key) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(ORIGIN, 300, [k.dnskey for k in keys])


def agree(
    rrset: dns.rrset.RRset, sig: dns.rdata.Rdata, keys: dns.rrset.RRset, now: float = NOW
) -> str | None:
    expected = dnspython_says(rrset, sig, keys, now)
    got = verify(rrsig(rrset.name, sig), ours(rrset), KeySet(keys), now)
    assert got == expected
    return got


RRSET = dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.80", "192.0.2.81")


@pytest.fixture(scope="module", params=[13, 8, 15])
def key(request: pytest.FixtureRequest) -> Key:
    return Key.make(request.param)


def test_good_and_tampered_signatures(key: Key) -> None:
    sig = sign_rrset(RRSET, key)
    assert agree(RRSET, sig, keyset(key)) is None
    changed = dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.80", "192.0.2.82")
    assert agree(changed, sig, keyset(key)) == "verify failure"
    flipped = bytearray(sig.signature)  # type: ignore[attr-defined]
    flipped[5] ^= 1
    assert agree(RRSET, sig.replace(signature=bytes(flipped)), keyset(key)) == "verify failure"
    truncated = sig.replace(signature=sig.signature[:-1])  # type: ignore[attr-defined]
    assert agree(RRSET, truncated, keyset(key)) == "verify failure"
    assert agree(RRSET, sig, keyset(Key.make(key.dnskey.algorithm))) == "verify failure"  # type: ignore[attr-defined]


def test_order_case_and_ttl_do_not_matter(key: Key) -> None:
    sig = sign_rrset(RRSET, key)
    other = dns.rrset.from_text("WWW.Example.TEST.", 60, "IN", "A", "192.0.2.81", "192.0.2.80")
    assert agree(other, sig, keyset(key)) is None


def test_times_and_key_choice(key: Key) -> None:
    sig = sign_rrset(RRSET, key)
    assert agree(RRSET, sig, keyset(key), now=NOW + 15 * 86400) == "expired"
    assert agree(RRSET, sig, keyset(key), now=NOW - 2 * 3600) == "not yet valid"
    elsewhere = dns.rrset.from_rdata_list(dns.name.from_text("other.test"), 300, [key.dnskey])
    assert agree(RRSET, sig, elsewhere) == "unknown key"
    revoked = key.dnskey.replace(flags=key.dnskey.flags | 0x80)  # type: ignore[attr-defined]
    assert agree(RRSET, sig, dns.rrset.from_rdata_list(ORIGIN, 300, [revoked])) == "verify failure"
    not_zone = key.dnskey.replace(flags=0)
    assert agree(RRSET, sig, dns.rrset.from_rdata_list(ORIGIN, 300, [not_zone])) == "verify failure"
    assert agree(RRSET, sig, keyset(Key.make(13), key, Key.make(8))) is None


def test_wildcards_and_labels() -> None:
    key = Key.make(13)
    wild = dns.rrset.from_text("*.wild.example.test.", 300, "IN", "TXT", '"w"')
    sig = sign_rrset(wild, key)
    assert agree(wild, sig, keyset(key)) is None
    expanded = dns.rrset.from_text("a.b.wild.example.test.", 300, "IN", "TXT", '"w"')  # an answer from *.wild
    assert agree(expanded, sig, keyset(key)) is None
    assert agree(dns.rrset.from_text("example.test.", 300, "IN", "TXT", '"w"'), sig, keyset(key)) == (
        "owner name longer than RRSIG labels"
    )
    assert agree(dns.rrset.from_text("*.example.test.", 300, "IN", "TXT", '"w"'), sig, keyset(key)) == (
        "wild owner name has wrong label length"
    )
    data = signed_data(rrsig(expanded.name, sig), ours(expanded))
    assert isinstance(sig, RRSIG)
    assert data == dns.dnssec._make_rrsig_signature_data(expanded, sig)


def test_names_in_rdata_are_canonical() -> None:
    key = Key.make(13)
    mx = dns.rrset.from_text("example.test.", 300, "IN", "MX", "10 Mail.Example.TEST.")
    sig = sign_rrset(mx, key)
    assert agree(mx, sig, keyset(key)) is None
    assert (
        agree(
            dns.rrset.from_text("example.test.", 300, "IN", "MX", "10 mail.example.test."), sig, keyset(key)
        )
        is None
    )


def test_covered_type_must_match() -> None:
    key = Key.make(13)
    sig = sign_rrset(RRSET, key)
    aaaa = dns.rrset.from_text("www.example.test.", 300, "IN", "AAAA", "2001:db8::80")
    assert agree(aaaa, sig, keyset(key)) == "RRSIG does not cover the RRset"
