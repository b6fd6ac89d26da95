import json
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from duo_ods.check.model import ZoneReport
from duo_ods.check.output import as_json, as_nagios, as_table
from duo_ods.check.sources import parse_source
from duo_ods.check.wire import decode_bitmap, encode_bitmap


def report(*problems: tuple[str, str, str]) -> ZoneReport:
    r = ZoneReport("example.test", serials={"a": 2026112801, "b": 2026112803}, signatures={"a": 23, "b": 23})
    r.min_expiry_days = 13.5
    for severity, source, message in problems:
        r.add(severity, source, message)  # type: ignore[arg-type]
    return r


def test_nagios_levels_and_perfdata() -> None:
    assert as_nagios([report()]) == (
        0,
        "DUO OK - 1 zones valid in any mix | zones=1 critical=0 warning=0 min_expiry_days=13.50",
    )
    code, line = as_nagios([report(("warning", "duo", "serials apart"))])
    assert code == 1 and line.startswith("DUO WARNING - duo: serials apart | zones=1 critical=0 warning=1")
    code, line = as_nagios([report(("warning", "duo", "w"), ("critical", "a", "bad sig"))])
    assert code == 2 and line.startswith("DUO CRITICAL - duo: w |")


def test_json_ok_follows_critical_only() -> None:
    data = as_json([report(("warning", "duo", "w"))])
    assert data["ok"] is True and data["zones"]["example.test"]["ok"] is True
    data = as_json([report(("critical", "a", "x")), report()])
    assert data["ok"] is False
    json.dumps(data)  # serialisable as is


def test_table_lists_problems_and_verdict() -> None:
    text = as_table([report(("critical", "a", "bad sig"))])
    assert "example.test" in text and "CRITICAL" in text
    assert "    critical: [a] bad sig" in text
    assert text.endswith("PROBLEMS: the mix is not proven")


def test_parse_source(tmp_path: Path) -> None:
    assert parse_source("127.0.0.1:53") == ("127.0.0.1", 53)
    assert parse_source("[::1]:5353") == ("::1", 5353)
    assert parse_source("zone.txt") == Path("zone.txt")
    odd = tmp_path / "x:53"
    odd.write_text("")
    assert parse_source(str(odd)) == odd  # an existing file wins


def test_bitmap_types() -> None:
    rd = dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.NSEC3,
        "1 0 0 - 0123456789ABCDEFGHIJKLMNOPQRSTUV A NS SOA RRSIG DNSKEY NSEC3PARAM TYPE65534",
    )
    wire = rd.to_wire()
    assert wire is not None
    bitmap = wire[6 + 20 :]  # after algorithm, flags, iterations, salt length 0, hash length, hash
    assert decode_bitmap(bitmap) == {1, 2, 6, 46, 48, 51, 65534}
    assert encode_bitmap(frozenset({1, 2, 6, 46, 48, 51, 65534})) == bitmap
