"""Tests for duo_ods.zones.validate: every rule passes its good case and names file:line for its bad one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dns.rdatatype
import dns.zone
import dns.zonefile
import pytest

from duo_ods.errors import ZoneFileError
from duo_ods.zones.validate import (
    CheckedZone,
    check_zone_file,
    check_zone_text,
    zone_name_from_filename,
)

DATA = Path(__file__).parent / "data"
SRC = "/in/example.com"

# Lines 1-4 of most test zones; what a test appends starts at line 5.
HEAD = [
    "$TTL 3600",
    "@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300",
    "@ IN NS ns1",
    "ns1 IN A 192.0.2.1",
]
DS_DATA = "54321 13 2 FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210"
KEY = "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="
SIG = "20250101000000 20240101000000 12345 example.com. AAECAwQFBgcICQoLDA0ODw=="
NSEC3_OWNER = "2t7b4g4vsa5smi47k61mv5bv1a22bojr"
# (record, its type, its owner) for each type only the signer makes
SIGNER_MADE = [
    (f"@ IN DNSKEY 257 3 13 {KEY}", "DNSKEY", "example.com."),
    (f"@ IN RRSIG SOA 13 2 3600 {SIG}", "RRSIG", "example.com."),
    ("ns1 IN NSEC example.com. A RRSIG NSEC", "NSEC", "ns1.example.com."),
    ("@ IN NSEC3PARAM 1 0 0 -", "NSEC3PARAM", "example.com."),
    (
        f"{NSEC3_OWNER} IN NSEC3 1 0 0 - 4KJDVNH6GKGB0N3UDUDRMPU2ORAJTLLE A RRSIG",
        "NSEC3",
        f"{NSEC3_OWNER}.example.com.",
    ),
]
SIGNER_RECORDS = [record for record, _, _ in SIGNER_MADE]


def zone(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def check(*lines: str, **kwargs: object) -> CheckedZone:
    return check_zone_text(zone(*lines), "example.com", source=SRC, **kwargs)  # type: ignore[arg-type]


def refused(*lines: str, **kwargs: object) -> str:
    with pytest.raises(ZoneFileError) as info:
        check(*lines, **kwargs)
    return str(info.value)


def rr_set(text: str, origin: str) -> set[tuple[str, int, str, str]]:
    """Every RR of a zone text as (owner, TTL, type, rdata), read by dnspython on its own."""
    parsed = dns.zone.from_text(text, origin, relativize=False, check_origin=False)
    return rr_set_of(parsed)


def rr_set_of(parsed: dns.zone.Zone) -> set[tuple[str, int, str, str]]:
    return {
        (name.to_text().lower(), rdataset.ttl, dns.rdatatype.to_text(rdataset.rdtype), rdata.to_text())
        for name, rdataset in parsed.iterate_rdatasets()
        for rdata in rdataset
    }


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("example.com", "example.com"),
        ("example.com.zone", "example.com"),
        ("Example.COM.ZONE", "example.com"),
        ("example.com.", "example.com"),
        ("/srv/zones/example.com.zone", "example.com"),
        ("nic.zone.zone", "nic.zone"),
        ("zone", "zone"),
        (".#example.com", None),
        ("example.com~", None),
        ("example.com.swp", None),
        (".example.com.swp", None),
        ("example.com.swx", None),
        ("example.com.tmp", None),
        (".hidden", None),
        ("#example.com#", None),
        ("4913", None),
        ("not a zone", None),
        ("", None),
    ],
)
def test_zone_name_from_filename(filename: str, expected: str | None) -> None:
    assert zone_name_from_filename(filename) == expected


# --- a good zone, and what the signer gets ------------------------------------------------------------


def test_fixture_zone_passes() -> None:
    checked = check_zone_file(DATA / "example.com.zone", "Example.COM.")
    assert checked.name == "example.com"
    assert checked.serial == 2024010101
    assert checked.records == 20
    assert checked.stripped == 0
    lines = checked.text.splitlines()
    assert len(lines) == checked.records
    assert lines[0].startswith("example.com. 3600 IN SOA ")
    for line in lines:  # absolute owner, explicit TTL and class, one RR per line
        owner, ttl, rdclass, rdtype, _ = line.split(" ", 4)
        assert owner.endswith(".")
        assert int(ttl) > 0
        assert rdclass == "IN"
        assert rdtype != "SOA" or line is lines[0]
    # the included file's records, its $TTL, and the origin given on the $INCLUDE line
    assert "b.hosts.example.com. 600 IN AAAA 2001:db8::11" in lines
    assert "last.example.com. 3600 IN A 192.0.2.99" in lines


def test_text_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = check_zone_file(DATA / "example.com.zone", "example.com")
    monkeypatch.chdir(DATA)  # dnspython opens $INCLUDE paths relative to the working directory
    original = dns.zone.from_file("example.com.zone", "example.com.", relativize=False, allow_include=True)
    assert rr_set(checked.text, "example.com.") == rr_set_of(original)


def test_stripped_text_round_trips_to_original_minus_signer_records() -> None:
    path = DATA / "signed.example.com.zone"
    checked = check_zone_file(path, "signed.example.com", dnssec_records="strip")
    assert checked.stripped == 7
    assert checked.records == 6
    original = rr_set_of(dns.zone.from_file(str(path), "signed.example.com.", relativize=False))
    signer_made = {"DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM"}
    assert rr_set(checked.text, "signed.example.com.") == {rr for rr in original if rr[2] not in signer_made}


def test_text_accepted_by_ldns(tmp_path: Path) -> None:
    # Types dnspython prints in a form older ldns cannot read go out as RFC 3597 generic data.
    extra = [
        "ipsec IN IPSECKEY 10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==",
        "svc IN SVCB 1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1",
        "loc IN LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m",
        "naptr IN NAPTR 100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .",
        "txt IN TXT \"semi;colon\" \"quote\\\"d\" \"\" \"bücher\"",
        "unk IN TYPE65534 \\# 0",
        "sshfp IN SSHFP 4 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
    ]  # fmt: skip
    text = (DATA / "example.com.zone").read_text() + zone(*extra)
    (tmp_path / "inc").mkdir()
    shutil.copy(DATA / "inc" / "hosts.inc", tmp_path / "inc")
    (tmp_path / "example.com").write_text(text)
    checked = check_zone_file(tmp_path / "example.com", "example.com")
    out = tmp_path / "signer-input"
    out.write_text(checked.text)

    result = subprocess.run(["ldns-read-zone", str(out)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert rr_set(result.stdout, "example.com.") == rr_set(checked.text, "example.com.")
    assert len(rr_set(checked.text, "example.com.")) == 27


def test_root_zone() -> None:
    checked = check_zone_text(
        zone(
            ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. 2024010101 1800 900 604800 86400",
            ". 518400 IN NS a.root-servers.net.",
            "com. 172800 IN NS a.gtld-servers.net.",
            f"com. 86400 IN DS {DS_DATA}",
        ),
        ".",
        source="root.zone",
    )
    assert checked.name == "."
    assert checked.records == 4
    assert checked.text.splitlines()[0].startswith(". 86400 IN SOA ")


def test_repeated_record_counts_once() -> None:
    checked = check(*HEAD, "www IN A 192.0.2.7", "www IN A 192.0.2.7", "www IN A 192.0.2.8")
    assert checked.records == 5


def test_generate_expands() -> None:
    checked = check(*HEAD, "$GENERATE 1-3 host$ IN A 192.0.2.$")
    assert checked.records == 6
    assert "host3.example.com. 3600 IN A 192.0.2.3" in checked.text.splitlines()


def test_generate_error_names_its_line() -> None:
    message = refused(*HEAD, "host2 IN CNAME ns1", "$GENERATE 1-3 host$ IN A 192.0.2.$")
    assert message == f"{SRC}:6: host2.example.com. has a CNAME and other data."


def test_missing_ttls_follow_dnspython() -> None:
    # No $TTL and no TTLs: the SOA takes its MINIMUM, and the records after it take that too.
    checked = check("@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300", "@ IN NS ns1", "ns1 IN A 192.0.2.1")
    assert [line.split()[1] for line in checked.text.splitlines()] == ["300", "300", "300"]


def test_crlf_and_bom_accepted(tmp_path: Path) -> None:
    path = tmp_path / "example.com"
    path.write_bytes(b"\xef\xbb\xbf" + zone(*HEAD).replace("\n", "\r\n").encode())
    assert check_zone_file(path, "example.com").records == 3


def test_bad_policy_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="dnssec_records"):
        check(*HEAD, dnssec_records="keep")


# --- the file itself ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "example.com"
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com")
    assert str(info.value) == f"{path}: no such file."


def test_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(tmp_path, "example.com")
    assert str(info.value) == f"{tmp_path}: not a regular file."


def test_too_big(tmp_path: Path) -> None:
    path = tmp_path / "example.com"
    path.write_text(zone(*HEAD))
    size = path.stat().st_size
    assert check_zone_file(path, "example.com", max_bytes=size).records == 3
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com", max_bytes=size - 1)
    assert str(info.value) == (
        f"{path}: bigger than the limit of {size - 1} bytes (zone file with its includes)."
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "example.com"
    path.write_bytes(zone(*HEAD).encode() + b'txt IN TXT "caf\xe9"\n')
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com")
    assert str(info.value) == f"{path}:5: not UTF-8 text (byte 0xe9)."


def test_nul_byte(tmp_path: Path) -> None:
    path = tmp_path / "example.com"
    path.write_bytes(zone(*HEAD[:2]).encode() + b"\0\n")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com")
    assert str(info.value) == f"{path}:3: NUL byte; this is not a text file."


# --- syntax -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("www IN A", "expecting an identifier."),
        ("www IN A 192.0.2", "cannot parse this A record: '192.0.2' is not an IPv4 address."),
        ("www IN AAAA 2001:db8::g", "cannot parse this AAAA record: '2001:db8::g' is not an IPv6 address."),
        ("www IN A 192.0.2.1 extra", 'unexpected "extra" where the record should end.'),
        ("www IN FOO 1", "unknown rdatatype 'FOO'."),
        ("www CH A 192.0.2.1", "RR class is not zone's class."),
        ("www", "cannot parse this record."),
        ("$FOO bar", "unknown directive $FOO."),
        ("$TTL 1x", "bad TTL: unknown unit 'x'."),
        ("a" * 64 + " IN A 192.0.2.1", "A DNS label is > 63 octets long."),
        ('txt IN TXT ( "unclosed"', "'(' in this record is never closed."),
        ('txt IN TXT "no end', "newline in quoted string."),
    ],
)
def test_syntax_error_names_its_line(line: str, message: str) -> None:
    assert refused(*HEAD, line, "after IN A 192.0.2.9") == f"{SRC}:5: {message}"


MULTILINE_SOA = [
    "$TTL 3600",
    "@ IN SOA ns1 hostmaster (",
    "        2024010101 ; serial",
    "        7200 3600 1209600",
    "        300 )",
    "@ IN NS ns1",
]


def test_multiline_soa_passes() -> None:
    checked = check(*MULTILINE_SOA)
    assert checked.serial == 2024010101
    assert checked.records == 2


def test_error_after_multiline_soa_names_its_line() -> None:
    assert refused(*MULTILINE_SOA, "www IN A 192.0.2.300") == (
        f"{SRC}:7: cannot parse this A record: '192.0.2.300' is not an IPv4 address."
    )
    outside = refused(*MULTILINE_SOA, "www.example.org. IN A 192.0.2.1")
    assert outside == f"{SRC}:7: www.example.org. is outside zone example.com."


def test_error_inside_multiline_soa_names_the_line_of_the_bad_field() -> None:
    lines = list(MULTILINE_SOA)
    lines[2] = "        twenty ; serial"
    assert refused(*lines) == f"{SRC}:3: expecting an integer."


def test_multiline_record_is_reported_at_its_first_line() -> None:
    message = refused(*MULTILINE_SOA, "", "txt.example.org. IN TXT (", '  "one"', '  "two" )')
    assert message == f"{SRC}:8: txt.example.org. is outside zone example.com."


# --- SOA and NS at the apex ---------------------------------------------------------------------------


def test_no_soa() -> None:
    assert refused("$TTL 3600", "@ IN NS ns1") == f"{SRC}: no SOA for zone example.com."


def test_second_soa() -> None:
    message = refused(*HEAD, "@ IN SOA ns1 hostmaster 2024010102 7200 3600 1209600 300")
    assert message == f"{SRC}:5: second SOA for zone example.com (the first is at {SRC}:2)."


def test_soa_below_apex() -> None:
    message = refused(*HEAD, "sub IN SOA ns1 hostmaster 1 7200 3600 1209600 300")
    assert message == f"{SRC}:5: SOA at sub.example.com. is not at the apex of zone example.com."


def test_origin_mismatch() -> None:
    message = refused("$TTL 3600", "example.org. IN SOA ns1 hostmaster 1 7200 3600 1209600 300")
    assert message == f"{SRC}:2: origin mismatch: the file is for example.org, asked for example.com."


def test_origin_mismatch_through_origin_directive() -> None:
    message = refused("$ORIGIN example.org.", *HEAD)
    assert message == f"{SRC}:3: origin mismatch: the file is for example.org, asked for example.com."


def test_absolute_names_and_own_origin_pass() -> None:
    checked = check(
        "$ORIGIN example.com.",
        "EXAMPLE.COM. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300",
        "example.com. 3600 IN NS ns1.example.com.",
    )
    assert checked.records == 2


def test_no_ns_at_apex() -> None:
    message = refused(*HEAD[:2], "sub IN NS ns.example.net.")
    assert message == f"{SRC}: no NS at the apex of zone example.com."


# --- out-of-zone data ---------------------------------------------------------------------------------


def test_out_of_zone() -> None:
    message = refused(*HEAD, "www IN A 192.0.2.2", "", "www.example.org. IN A 192.0.2.3")
    assert message == f"{SRC}:7: www.example.org. is outside zone example.com."


def test_name_that_only_ends_like_the_zone_is_outside() -> None:
    assert refused(*HEAD, "notexample.com. IN A 192.0.2.3") == (
        f"{SRC}:5: notexample.com. is outside zone example.com."
    )


def test_out_of_zone_after_origin_change() -> None:
    message = refused(*HEAD, "$ORIGIN example.net.", "www IN A 192.0.2.3")
    assert message == f"{SRC}:6: www.example.net. is outside zone example.com."


def test_in_zone_absolute_names_pass() -> None:
    assert check(*HEAD, "www.example.com. IN A 192.0.2.3", "WWW2.Example.Com. IN A 192.0.2.4").records == 5


# --- DNSSEC records -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "rdtype", "owner"), SIGNER_MADE)
def test_signer_records_refused(record: str, rdtype: str, owner: str) -> None:
    message = refused(*HEAD, record)
    assert (
        message == f"{SRC}:5: {rdtype} at {owner} is made by the signer; zone example.com must be unsigned."
    )


def test_signer_records_refused_by_default_in_file() -> None:
    path = DATA / "signed.example.com.zone"
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "signed.example.com")
    zone_name = "signed.example.com"
    assert str(info.value) == (
        f"{path}:4: RRSIG at {zone_name}. is made by the signer; zone {zone_name} must be unsigned."
    )


def test_signer_records_stripped() -> None:
    checked = check(*HEAD, *SIGNER_RECORDS, dnssec_records="strip")
    assert checked.stripped == 5
    assert checked.records == 3
    assert checked.text == check(*HEAD).text


def test_nothing_stripped_from_unsigned_zone() -> None:
    assert check(*HEAD, dnssec_records="strip").stripped == 0


@pytest.mark.parametrize("policy", ["refuse", "strip"])
def test_cds_and_cdnskey_at_apex_pass_through(policy: str) -> None:
    checked = check(
        *HEAD,
        "@ IN CDS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
        f"@ IN CDNSKEY 257 3 13 {KEY}",
        dnssec_records=policy,
    )
    assert checked.records == 5
    assert checked.stripped == 0
    types = [line.split()[3] for line in checked.text.splitlines()]
    assert types[-2:] == ["CDS", "CDNSKEY"]


@pytest.mark.parametrize("policy", ["refuse", "strip"])
def test_ds_at_delegation_passes_through(policy: str) -> None:
    # The DS may come before the NS that makes its name a delegation.
    checked = check(*HEAD, f"child IN DS {DS_DATA}", "child IN NS ns.example.net.", dnssec_records=policy)
    assert checked.records == 5
    assert f"child.example.com. 3600 IN DS {DS_DATA.lower()}" in checked.text.splitlines()


def test_ds_at_apex_refused() -> None:
    message = refused(*HEAD, f"@ IN DS {DS_DATA}")
    assert message == f"{SRC}:5: DS at the apex of zone example.com; it belongs in the parent zone."


def test_ds_without_delegation_refused() -> None:
    message = refused(*HEAD, "www IN A 192.0.2.5", f"www IN DS {DS_DATA}", "child IN NS ns.example.net.")
    assert (
        message
        == f"{SRC}:6: DS at www.example.com. is not at a delegation (no NS there) in zone example.com."
    )


# --- CNAME and other data -----------------------------------------------------------------------------


def test_cname_alone_passes() -> None:
    assert check(*HEAD, "www IN CNAME ns1", "ftp IN CNAME www.example.net.").records == 5


@pytest.mark.parametrize(
    "records", [("www IN CNAME ns1", "www IN A 192.0.2.5"), ("www IN A 192.0.2.5", "www IN CNAME ns1")]
)
def test_cname_and_other_data_refused(records: tuple[str, str]) -> None:
    assert refused(*HEAD, *records) == f"{SRC}:6: www.example.com. has a CNAME and other data."


def test_cname_at_apex_refused() -> None:
    assert (
        refused(*HEAD, "@ IN CNAME www.example.net.") == f"{SRC}:5: example.com. has a CNAME and other data."
    )


def test_two_cnames_refused() -> None:
    message = refused(*HEAD, "www IN CNAME ns1", "www IN CNAME www.example.net.")
    assert message == f"{SRC}:6: more than one CNAME at www.example.com."


def test_cname_with_stripped_signature_passes() -> None:
    rrsig = f"www IN RRSIG CNAME 13 3 3600 {SIG}"
    checked = check(*HEAD, "www IN CNAME ns1", rrsig, dnssec_records="strip")
    assert (checked.records, checked.stripped) == (4, 1)


# --- $INCLUDE -----------------------------------------------------------------------------------------


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(zone(*lines))
    return path


def test_include_inside_root(tmp_path: Path) -> None:
    write(tmp_path / "inc" / "hosts.inc", "a IN A 192.0.2.10", "b IN A 192.0.2.11")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE inc/hosts.inc", "c IN A 192.0.2.12")
    checked = check_zone_file(main, "example.com")
    assert checked.records == 6
    assert "b.example.com. 3600 IN A 192.0.2.11" in checked.text.splitlines()


def test_include_with_origin_and_nested(tmp_path: Path) -> None:
    write(tmp_path / "inc" / "outer.inc", "x IN A 192.0.2.20", "$INCLUDE inc/inner.inc deeper")
    write(tmp_path / "inc" / "inner.inc", "y IN A 192.0.2.21")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE inc/outer.inc sub", "z IN A 192.0.2.22")
    lines = check_zone_file(main, "example.com").text.splitlines()
    assert lines[-3:] == [
        "x.sub.example.com. 3600 IN A 192.0.2.20",
        "y.deeper.sub.example.com. 3600 IN A 192.0.2.21",
        "z.example.com. 3600 IN A 192.0.2.22",
    ]


def test_error_in_include_names_the_included_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "hosts.inc", "a IN A 192.0.2.10", "", "b.example.org. IN A 192.0.2.11")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE hosts.inc")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert str(info.value) == f"{inc.resolve()}:3: b.example.org. is outside zone example.com."


def test_signer_record_in_include_names_the_included_file(tmp_path: Path) -> None:
    inc = write(tmp_path / "keys.inc", SIGNER_RECORDS[0])
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE keys.inc")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert str(info.value).startswith(f"{inc.resolve()}:1: DNSKEY at example.com. is made by the signer")
    assert check_zone_file(main, "example.com", dnssec_records="strip").stripped == 1


def test_include_outside_root_refused(tmp_path: Path) -> None:
    write(tmp_path / "outside.inc", "a IN A 192.0.2.10")
    main = write(tmp_path / "zones" / "example.com", *HEAD, "$INCLUDE ../outside.inc")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    root = (tmp_path / "zones").resolve()
    assert str(info.value) == f"{main}:5: $INCLUDE ../outside.inc: outside the include root {root}."


def test_absolute_include_outside_root_refused(tmp_path: Path) -> None:
    main = write(tmp_path / "zones" / "example.com", *HEAD, "$INCLUDE /etc/passwd")
    with pytest.raises(ZoneFileError, match=r":5: \$INCLUDE /etc/passwd: outside the include root"):
        check_zone_file(main, "example.com")


def test_absolute_include_inside_root_passes(tmp_path: Path) -> None:
    inc = write(tmp_path / "hosts.inc", "a IN A 192.0.2.10")
    main = write(tmp_path / "example.com", *HEAD, f"$INCLUDE {inc}")
    assert check_zone_file(main, "example.com").records == 4


def test_include_through_symlink_out_of_root_refused(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "hosts.inc", "a IN A 192.0.2.10")
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "link.inc").symlink_to(tmp_path / "elsewhere" / "hosts.inc")
    main = write(tmp_path / "zones" / "example.com", *HEAD, "$INCLUDE link.inc")
    with pytest.raises(ZoneFileError, match=r":5: \$INCLUDE link.inc: outside the include root"):
        check_zone_file(main, "example.com")


def test_nested_include_follows_the_same_rule(tmp_path: Path) -> None:
    write(tmp_path / "secret.inc", "a IN A 192.0.2.10")
    inc = write(tmp_path / "zones" / "hosts.inc", "b IN A 192.0.2.11", "$INCLUDE ../secret.inc")
    main = write(tmp_path / "zones" / "example.com", *HEAD, "$INCLUDE hosts.inc")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert str(info.value).startswith(f"{inc.resolve()}:2: $INCLUDE ../secret.inc: outside the include root")


def test_explicit_include_root(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "hosts.inc", "a IN A 192.0.2.10")
    main = write(tmp_path / "zones" / "example.com", *HEAD, "$INCLUDE hosts.inc")
    assert check_zone_file(main, "example.com", include_root=tmp_path / "shared").records == 4


def test_include_loop_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.inc", "a IN A 192.0.2.10", "$INCLUDE b.inc")
    b = write(tmp_path / "b.inc", "$INCLUDE a.inc")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE a.inc")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert str(info.value) == f"{b.resolve()}:1: $INCLUDE a.inc: includes itself (loop)."


def test_missing_include(tmp_path: Path) -> None:
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE nope.inc")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert str(info.value) == f"{main}:5: $INCLUDE nope.inc: no such file."


def test_includes_count_against_max_bytes(tmp_path: Path) -> None:
    write(tmp_path / "hosts.inc", "a IN A 192.0.2.10")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE hosts.inc")
    limit = main.stat().st_size + 5
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com", max_bytes=limit)
    assert str(info.value) == (
        f"{main}:5: $INCLUDE hosts.inc: bigger than the limit of {limit} bytes (zone file with its includes)."
    )


def test_include_in_text_needs_a_root(tmp_path: Path) -> None:
    message = refused(*HEAD, "$INCLUDE hosts.inc")
    assert message == f"{SRC}:5: $INCLUDE hosts.inc: includes are not allowed here (no include root)."
    write(tmp_path / "hosts.inc", "a IN A 192.0.2.10")
    assert check(*HEAD, "$INCLUDE hosts.inc", include_root=tmp_path).records == 4


def test_include_state_is_restored_afterwards(tmp_path: Path) -> None:
    write(tmp_path / "hosts.inc", "$TTL 60", "$ORIGIN elsewhere.example.com.", "a IN A 192.0.2.10")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE hosts.inc", "b IN A 192.0.2.11")
    lines = check_zone_file(main, "example.com").text.splitlines()
    assert lines[-2:] == [
        "a.elsewhere.example.com. 60 IN A 192.0.2.10",
        "b.example.com. 3600 IN A 192.0.2.11",
    ]


def test_main_file_lines_continue_after_include(tmp_path: Path) -> None:
    write(tmp_path / "hosts.inc", "a IN A 192.0.2.10", "b IN A 192.0.2.11", "c IN A 192.0.2.12")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE hosts.inc", "d IN A 192.0.2.13", "e IN A 192.0.2")
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert str(info.value) == f"{main}:7: cannot parse this A record: '192.0.2' is not an IPv4 address."


def test_relative_path_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "example.com", *HEAD, "www.example.org. IN A 192.0.2.3")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(Path("example.com"), "example.com")
    assert str(info.value) == "example.com:5: www.example.org. is outside zone example.com."


# --- input limits ---------------------------------------------------------------------------------------

BOMB = "$GENERATE 0-4294967295 host$ IN A 192.0.2.1"


def test_generate_bomb_refused_before_it_expands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few hundred bytes asking for 4 billion records: one error naming its line, nothing generated."""
    path = write(tmp_path / "example.com", *HEAD, BOMB)
    assert path.stat().st_size < 226
    made: list[object] = []
    real = dns.zonefile._generate_text

    def counting(template: str, counter: int) -> str:
        made.append(counter)
        return real(template, counter)

    monkeypatch.setattr(dns.zonefile, "_generate_text", counting)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com")
    assert str(info.value) == (
        f"{path}:5: $GENERATE 0-4294967295 makes 4294967296 records on top of the 3 before it, "
        "more than the limit of 1000000 (the [input] max_records limit)."
    )
    assert made == []


def test_generate_counts_its_step() -> None:
    assert check(*HEAD, "$GENERATE 0-9/2 h$ IN A 192.0.2.1", max_records=8).records == 8
    message = refused(*HEAD, "$GENERATE 0-10/2 h$ IN A 192.0.2.1", max_records=8)
    assert message == (
        f"{SRC}:5: $GENERATE 0-10/2 makes 6 records on top of the 3 before it, "
        "more than the limit of 8 (the [input] max_records limit)."
    )


def test_generate_within_limit_expands() -> None:
    assert check(*HEAD, "$GENERATE 1-100 h$ IN A 192.0.2.1", max_records=103).records == 103


def test_generate_bad_range_is_still_dnspythons_error() -> None:
    assert refused(*HEAD, "$GENERATE 9-1 h$ IN A 192.0.2.1", max_records=5) == f"{SRC}:5: syntax error."


def test_plain_records_count_against_the_limit() -> None:
    lines = [f"h{i} IN A 192.0.2.1" for i in range(3)]
    assert check(*HEAD, *lines, max_records=6).records == 6
    assert refused(*HEAD, *lines, max_records=5) == (
        f"{SRC}:7: more than 5 records (the [input] max_records limit)."
    )


def test_records_in_includes_count_too(tmp_path: Path) -> None:
    write(tmp_path / "hosts.inc", "$GENERATE 1-5 h$ IN A 192.0.2.1")
    main = write(tmp_path / "example.com", *HEAD, "$INCLUDE hosts.inc", "www IN A 192.0.2.2")
    assert check_zone_file(main, "example.com", max_records=9).records == 9
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com", max_records=8)
    assert str(info.value) == f"{main}:6: more than 8 records (the [input] max_records limit)."


def test_size_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over the limit is refused from its size alone: it is never opened for reading."""
    path = write(tmp_path / "example.com", *HEAD)
    reads: list[object] = []

    def spy(*args: object, **kwargs: object) -> object:
        reads.append(args)
        return open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("duo_ods.zones.validate.open", spy, raising=False)
    assert check_zone_file(path, "example.com").records == 3
    assert len(reads) == 1  # the spy sees reads
    reads.clear()
    with pytest.raises(ZoneFileError, match="bigger than the limit of 10 bytes"):
        check_zone_file(path, "example.com", max_bytes=10)
    assert reads == []


def test_fifo_named_like_a_zone_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "example.com"
    os.mkfifo(fifo)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(fifo, "example.com")
    assert str(info.value) == f"{fifo}: not a regular file."


MARKER = "SECRET-MARKER-4f1c"


def outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text(zone(*HEAD, f'txt IN TXT "{MARKER}"'))
    return secret


def test_symlink_out_of_confined_dir_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = outside_secret(tmp_path)
    inbox = tmp_path / "input"
    inbox.mkdir()
    link = inbox / "example.com"
    link.symlink_to(secret)
    opened: list[str] = []
    real_open = os.open

    def watch_open(path: object, flags: int, *args: int, **kwargs: object) -> int:
        opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", watch_open)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(link, "example.com", confine_to=inbox)
    message = str(info.value)
    assert message == f"{link}: symbolic link to a file outside the input directory; refused."
    assert MARKER not in message and "\n" not in message
    assert str(secret) not in opened


def test_symlink_inside_confined_dir_followed(tmp_path: Path) -> None:
    inbox = tmp_path / "input"
    (inbox / "real").mkdir(parents=True)
    target = write(inbox / "real" / "example.com.db", *HEAD)
    link = inbox / "example.com"
    link.symlink_to(target)
    assert check_zone_file(link, "example.com", confine_to=inbox).records == 3


def test_symlink_through_dotdot_out_of_dir_refused(tmp_path: Path) -> None:
    secret = outside_secret(tmp_path)
    inbox = tmp_path / "input"
    inbox.mkdir()
    link = inbox / "example.com"
    link.symlink_to(Path("..") / secret.parent.name / secret.name)
    with pytest.raises(ZoneFileError, match="outside the input directory; refused"):
        check_zone_file(link, "example.com", confine_to=inbox)


def test_symlink_given_explicitly_is_the_operators_choice(tmp_path: Path) -> None:
    """`zone add --file LINK`: no input directory to confine to; the operator named the file."""
    secret = outside_secret(tmp_path)
    link = tmp_path / "example.com"
    link.symlink_to(secret)
    assert check_zone_file(link, "example.com").records == 4


def test_confined_file_swapped_for_a_symlink_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check and the open are apart: a link swapped in between fails to open (O_NOFOLLOW)."""
    secret = outside_secret(tmp_path)
    inbox = tmp_path / "input"
    inbox.mkdir()
    path = write(inbox / "example.com", *HEAD)
    real_open = os.open

    def swap_then_open(target: object, flags: int, *args: int, **kwargs: object) -> int:
        if str(target) == str(path):
            path.unlink()
            path.symlink_to(secret)
        return real_open(target, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com", confine_to=inbox)
    assert str(info.value) == f"{path}: became a symbolic link while it was read; refused."


def test_confined_file_that_vanished(tmp_path: Path) -> None:
    inbox = tmp_path / "input"
    inbox.mkdir()
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(inbox / "example.com", "example.com", confine_to=inbox)
    assert str(info.value) == f"{inbox / 'example.com'}: no such file (it vanished before it could be read)."


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "example.com", *HEAD)

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(path, "example.com")
    assert str(info.value) == f"{path}: cannot read: Permission denied."


def test_include_swapped_for_a_symlink_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = outside_secret(tmp_path)
    inc = write(tmp_path / "zone" / "hosts.inc", "a IN A 192.0.2.10")
    main = write(tmp_path / "zone" / "example.com", *HEAD, "$INCLUDE hosts.inc")
    real_open = os.open

    def swap_then_open(target: object, flags: int, *args: int, **kwargs: object) -> int:
        if str(target) == str(inc):
            inc.unlink()
            inc.symlink_to(secret)
        return real_open(target, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(ZoneFileError) as info:
        check_zone_file(main, "example.com")
    assert (
        str(info.value) == f"{main}:5: $INCLUDE hosts.inc: became a symbolic link while it was read; refused."
    )
