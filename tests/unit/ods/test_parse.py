from pathlib import Path

from duo_ods.ods.client import _looks_failed, _strip_banner
from duo_ods.ods.parse import EnforcerZone, parse_zone_list

# Captured from ods-enforcer 2.1.12 `zone list` (with its trailing blanks).
ZONE_LIST = (Path(__file__).parent / "data" / "zone-list.txt").read_text()


def test_parse_zone_list() -> None:
    assert parse_zone_list(ZONE_LIST) == [
        EnforcerZone(
            "example.test", "duo", "no changes scheduled", "/tmp/probe/a/var/signconf/example.test.xml"
        ),
        EnforcerZone("b.example", "duo", "2026-11-28 04:10:01", "/tmp/probe/a/var/signconf/b.example.xml"),
    ]


def test_parse_empty_zone_list() -> None:
    assert parse_zone_list("Database set to: /x/kasp.db\nNo zones in database.\n") == []


def test_banner_and_failure_words() -> None:
    assert _strip_banner("sock set to /x/enforcer.sock\nEngine running.") == "Engine running."
    assert _looks_failed("Unable to connect to engine. connect() failed")
    assert not _looks_failed("Zone example.test added successfully")
