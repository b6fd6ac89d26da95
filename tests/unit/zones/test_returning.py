"""A returning zone comes back above its old copies' serial (zones/returning.py): the record made at
removal, the raise at add, and `zone add FILE...` sending the raised text. The copies' serials are
given here; the real path (signers, relays, a BIND secondary) is
tests/integration/test_zone_return.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.protocol import ops as P
from duo_ods.zones import returning
from duo_ods.zones.inputs import latest_input
from duo_ods.zones.manage import add_zones, check_file
from tests.support.configs import TWO_NODES
from tests.unit.zones.test_add_many import Nodes, zone_text

TODAY = int(time.strftime("%Y%m%d", time.gmtime())) * 100


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The serials the copies serve now, as the test sets them."""
    serials: list[int] = []
    monkeypatch.setattr(returning, "serials_seen", lambda duo, zone, **kw: list(serials))
    return serials


def checked(duo: Duo, tmp_path: Path, zone: str = "ret.test"):  # type: ignore[no-untyped-def]
    (tmp_path / zone).write_text(zone_text(zone))
    return check_file(duo, zone, tmp_path / zone)


def test_a_zone_never_removed_is_left_alone(duo: Duo, tmp_path: Path, seen: list[int]) -> None:
    seen.append(TODAY + 50)  # even a copy served somewhere: the duo never served this zone
    zone = checked(duo, tmp_path)
    assert returning.above_old_copies(duo, zone) is zone


def test_removal_records_the_highest_serial_and_keeps_a_higher_one(duo: Duo, seen: list[int]) -> None:
    assert returning.remember_serial(duo, "ret.test") is None  # nothing served: no record
    assert not returning.record_path(duo, "ret.test").exists()
    seen.extend([TODAY + 3, TODAY + 7, TODAY + 5])
    assert returning.remember_serial(duo, "ret.test") == TODAY + 7
    path = returning.record_path(duo, "ret.test")
    assert json.loads(path.read_text()) == {"zone": "ret.test", "serial": TODAY + 7}
    assert path.stat().st_mode & 0o777 == 0o600
    seen[:] = [TODAY + 4]  # the second watcher, after the first node dropped it
    assert returning.remember_serial(duo, "ret.test") == TODAY + 7


def test_a_returning_zone_is_raised_above_the_record_and_what_is_served(
    duo: Duo, tmp_path: Path, seen: list[int]
) -> None:
    seen.append(TODAY + 9)
    returning.remember_serial(duo, "ret.test")
    seen[:] = [TODAY + 12]  # a secondary still holding a later copy
    zone = checked(duo, tmp_path)
    assert zone.serial == 2026112800
    raised = returning.above_old_copies(duo, zone)
    assert raised.serial == TODAY + 13
    soa = next(line for line in raised.text.splitlines() if " SOA " in line)
    assert soa.split()[6] == str(TODAY + 13)
    assert raised.text.replace(str(TODAY + 13), "2026112800", 1) == zone.text  # nothing else changed
    seen.clear()  # gone everywhere now: the record alone still counts
    assert returning.above_old_copies(duo, zone).serial == TODAY + 10


def test_an_input_serial_above_every_copy_is_kept(duo: Duo, tmp_path: Path, seen: list[int]) -> None:
    seen.append(2026112805)
    returning.remember_serial(duo, "ret.test")
    (tmp_path / "ret.test").write_text(zone_text("ret.test").replace("2026112800", str(TODAY + 80)))
    zone = check_file(duo, "ret.test", tmp_path / "ret.test")
    assert returning.above_old_copies(duo, zone) is zone


def test_zone_add_of_files_sends_and_records_the_raised_text(
    duo: Duo, tmp_path: Path, seen: list[int]
) -> None:
    seen.append(TODAY + 20)
    returning.remember_serial(duo, "ret.test")
    seen.clear()
    nodes = Nodes()
    sent: list[str] = []
    add = nodes.add

    def spy(node: str, r: P.ZoneBatchRequest) -> P.ZoneBatchReply:
        sent.extend(z.text for z in r.zones)
        return add(node, r)

    nodes.on(P.ZONE_ADD_BATCH, spy)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ret.test").write_text(zone_text("ret.test"))
    (folder / "new.test").write_text(zone_text("new.test"))
    outcomes = add_zones(duo, nodes.client, [folder / "ret.test", folder / "new.test"])
    assert [o.error for o in outcomes] == [None, None]
    assert {o.zone: o.result.serial for o in outcomes if o.result} == {
        "ret.test": TODAY + 21,
        "new.test": 2026112800,
    }
    assert len(sent) == 4 and sum(f" {TODAY + 21} " in t for t in sent) == 2  # ret.test on both nodes
    record = latest_input(duo, "ret.test")
    assert record is not None and record.serial == TODAY + 21  # what a node that misses it catches up to
