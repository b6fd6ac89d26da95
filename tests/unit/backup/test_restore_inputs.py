"""backup restore's choice of input per zone and its refusal to put older data in front of the
secondaries (the real restore is tests/integration/test_restore.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from duo_ods.backup import restore
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.protocol import ops as P
from duo_ods.zones.content import Copy, text_content_digest
from duo_ods.zones.inputs import Candidate, record_input
from duo_ods.zones.validate import check_zone_text
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ZONE = "example.test"
OLD = """example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. 2026112800 3600 600 864000 300
example.test. 300 IN NS ns1.example.test.
ns1.example.test. 300 IN A 192.0.2.1
"""
NEW = OLD.replace("2026112800", "2026112801") + "www.example.test. 300 IN A 192.0.2.80\n"


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    config = TWO_NODES + '[[secondaries]]\nname = "ns1"\naddress = "127.0.0.13"\n'
    (tmp_path / "duo.toml").write_text(config)
    return load_config(tmp_path / "duo.toml")


def snapshot(text: str, taken: float = 1000.0) -> P.Snapshot:
    return P.Snapshot(taken=taken, node="a", zones=[P.ZoneExport(zone=ZONE, text=text, states=None)])


def test_the_record_beats_an_older_snapshot(duo: Duo) -> None:
    record_input(duo, check_zone_text(NEW, ZONE, source="test"))
    best = restore._best_inputs(duo, FakeNodes().client, "backup", snapshot(OLD, taken=9e9))
    assert best[ZONE].source == "record"
    assert best[ZONE].text == check_zone_text(NEW, ZONE, source="test").text


def test_without_a_record_the_snapshot_is_used(duo: Duo) -> None:
    best = restore._best_inputs(duo, FakeNodes().client, "backup", snapshot(OLD))
    assert best[ZONE].source == "snapshot" and best[ZONE].text == OLD


def test_older_data_in_front_of_a_secondary_is_found(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore, "transfer_key", lambda duo: None)
    served = Copy(2026112809, text_content_digest(NEW, ZONE))
    monkeypatch.setattr(restore, "served_copy", lambda address, port, zone, key: served)
    older = restore._older_than_secondaries(duo, {ZONE: Candidate("snapshot", OLD, 1000.0)})
    assert older == [f"{ZONE} (secondary ns1 serves serial 2026112809 with other data)"]
    # the same content, or the record (nothing ods-duo served is newer than it): nothing to refuse
    assert restore._older_than_secondaries(duo, {ZONE: Candidate("snapshot", NEW, 1000.0)}) == []
    assert restore._older_than_secondaries(duo, {ZONE: Candidate("record", OLD, 1000.0)}) == []


def test_ages_read_well() -> None:
    assert restore.age(7 * 60 + 3) == "7m 3s"
    assert restore.age(2 * 3600 + 5 * 60) == "2h 5m"
    assert restore.age(3 * 86400 + 4 * 3600) == "3d 4h"
