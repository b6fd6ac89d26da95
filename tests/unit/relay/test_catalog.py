"""RFC 9432 catalog zones: names per mode, member labels, the zone text, the serial."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.relay.catalog import catalog_name, catalog_text, member_label, next_serial
from tests.support.configs import TWO_NODES

CONFIG = 'name = "lab"\n' + TWO_NODES


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    return load_config(tmp_path / "duo.toml")


def test_one_catalog_in_failover_one_per_signer_in_split(duo: Duo) -> None:
    assert {catalog_name(duo, n) for n in ("a", "b")} == {"lab.catalog.invalid"}
    split = dataclasses.replace(
        duo,
        config=duo.config.model_copy(
            update={"transfer": duo.config.transfer.model_copy(update={"mode": "split"})}
        ),
    )
    assert [catalog_name(split, n) for n in ("a", "b")] == ["a.lab.catalog.invalid", "b.lab.catalog.invalid"]


def test_member_label_is_stable_and_case_blind() -> None:
    assert member_label("Example.TEST.") == member_label("example.test")
    assert member_label("example.test") != member_label("example.org")
    assert len(member_label("example.test")) == 40


def test_catalog_text_is_a_version_2_catalog() -> None:
    text = catalog_text("lab.catalog.invalid", 7, ["b.test", "a.test"])
    zone = dns.zone.from_text(text, origin="lab.catalog.invalid.", relativize=False)
    assert zone.find_rdataset("lab.catalog.invalid.", "SOA")[0].serial == 7
    assert str(zone.find_rdataset("version.lab.catalog.invalid.", "TXT")[0]) == '"2"'
    members = {
        str(rr.target): name.to_text()
        for name, rdataset in zone.iterate_rdatasets(dns.rdatatype.PTR)
        for rr in rdataset
    }
    assert set(members) == {"a.test.", "b.test."}
    assert members["a.test."] == f"{member_label('a.test')}.zones.lab.catalog.invalid."


def test_serial_only_moves_forward() -> None:
    assert next_serial(None, now=1000) == 1000
    assert next_serial(999, now=1000) == 1000
    assert next_serial(5000, now=1000) == 5001  # a clock behind the last serial: one more
    assert next_serial(0xFFFFFFFF, now=1000) == 1000  # wraps as RFC 1982 serials do
