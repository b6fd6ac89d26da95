"""The node's check of a zone text it was sent (verify_zone_text) refuses exactly what check_zone_text
refuses, and accepts what it accepts: it only skips writing the text out again (issue 14 latency)."""

from __future__ import annotations

import pytest

from duo_ods.errors import ZoneFileError
from duo_ods.zones.validate import check_zone_text, verify_zone_text
from tests.unit.zones.test_validate import HEAD, SIGNER_RECORDS, zone

ZONE = "example.com"
BAD = [
    *[[*HEAD, record] for record in SIGNER_RECORDS],
    [*HEAD, "www.example.org. IN A 192.0.2.9"],  # outside the zone
    [*HEAD, "@ IN SOA ns1 hostmaster 2024010102 7200 3600 1209600 300"],  # a second SOA
    [*HEAD[:1], *HEAD[2:]],  # no SOA
    [*HEAD[:2], "ns1 IN A 192.0.2.1"],  # no NS at the apex
    [*HEAD, "$INCLUDE /etc/passwd"],  # no include root: refused
    [*HEAD, "www IN CNAME ns1", "www IN A 192.0.2.7"],
    [*HEAD, "sub IN DS 54321 13 2 " + "AB" * 32],  # DS not at a delegation
    [*HEAD, "www IN A 192.0.2.300"],
    [*HEAD, "x\0 IN A 192.0.2.1"],
]


@pytest.mark.parametrize("lines", BAD)
def test_what_the_check_refuses_the_node_refuses(lines: list[str]) -> None:
    text = zone(*lines)
    with pytest.raises(ZoneFileError) as checked:
        check_zone_text(text, ZONE, source="sent")
    with pytest.raises(ZoneFileError) as verified:
        verify_zone_text(text, ZONE, source="sent")
    assert str(verified.value) == str(checked.value)


def test_the_record_limit_holds() -> None:
    text = zone(*HEAD, *(f"h{i} IN A 192.0.2.{i}" for i in range(10)))
    verify_zone_text(text, ZONE, source="sent", max_records=13)
    with pytest.raises(ZoneFileError, match="more than 12 records"):
        verify_zone_text(text, ZONE, source="sent", max_records=12)


def test_a_checked_text_passes() -> None:
    checked = check_zone_text(zone(*HEAD, "www IN A 192.0.2.7"), ZONE, source="file")
    verify_zone_text(checked.text, ZONE, source="sent")  # no error
