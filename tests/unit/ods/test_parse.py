from pathlib import Path

from duo_ods.ods.client import _looks_failed, _strip_banner
from duo_ods.ods.parse import (
    EnforcerKey,
    EnforcerZone,
    parse_key_list_debug,
    parse_key_list_verbose,
    parse_zone_list,
)

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


def test_parse_key_list_verbose() -> None:
    keys = parse_key_list_verbose((Path(__file__).parent / "data" / "key-list-verbose.txt").read_text())
    assert keys == [
        EnforcerKey("example.test", "CSK", "mixed", "2026-11-28 04:00:00", 256, 13,
                    "196791f268aabd6bce9f355eb351e973", "duo", 17153),
        EnforcerKey("z2.test", "CSK", "ready", "waiting for ds-seen", 256, 13,
                    "f77fb60316cefd3e3677275f4d161431", "duo", 30300),
    ]  # fmt: skip


def test_parse_key_list_debug() -> None:
    keys = parse_key_list_debug((Path(__file__).parent / "data" / "key-list-debug.txt").read_text())
    assert [(k.zone, k.dnskey, k.rrsig, k.published, k.active) for k in keys] == [
        ("example.test", "hidden", "hidden", False, False),
        ("z2.test", "rumoured", "rumoured", True, True),
    ]
    assert keys[1].locator == "f77fb60316cefd3e3677275f4d161431"
