"""check: a secondary that serves other data than the zone's newest recorded input is critical once
that input is older than the margin (check.newest), noted before. Signed files stand in for the
copies; the real path (a stale copy that outranked the newest data) is test_freshness.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dns.rdatatype
import pytest

import duo_ods.check.run
from duo_ods.check.model import Thresholds, ZoneReport
from duo_ods.check.run import check_duo
from duo_ods.check.sources import FileSource, Source
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.zones.inputs import record_text
from tests.support.configs import TWO_NODES
from tests.unit.check.signer import Key, signed
from tests.unit.check.test_check_duo import ZONE, FakeNodes, key_states

SECONDARY = '\n[[secondaries]]\nname = "ns1"\naddress = "127.0.0.13"\nport = 53\n'
SIGNER_MADE = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY"}


@pytest.fixture(scope="module")
def keys() -> tuple[Key, Key]:
    return Key.make(flags=257), Key.make()


@pytest.fixture
def duo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: tuple[Key, Key]) -> tuple[Duo, str]:
    """A duo whose three copies (a, b, ns1) serve one signed zone; and that zone's input text."""
    (tmp_path / "duo.toml").write_text(TWO_NODES + SECONDARY)
    duo = load_config(tmp_path / "duo.toml")
    zone = signed(ksk=keys[0], zsk=keys[1], now=int(time.time()))
    copies: list[Source] = []
    for name in ("a", "b", "ns1"):
        zone.to_file(str(tmp_path / name), relativize=False, want_origin=True)
        copies.append(FileSource(name, tmp_path / name))
    monkeypatch.setattr(duo_ods.check.run, "live_sources", lambda _duo, zone: copies)
    text = "\n".join(
        f"{name} {ttl} IN {dns.rdatatype.to_text(rd.rdtype)} {rd.to_text()}"
        for name, ttl, rd in zone.iterate_rdatas()
        if dns.rdatatype.to_text(rd.rdtype) not in SIGNER_MADE
    )
    return duo, text + "\n"


def problems(duo: Duo, keys: tuple[Key, Key]) -> list[ZoneReport]:
    nodes = FakeNodes([key_states(keys[0], "KSK", "c1" * 16)])
    return check_duo(duo, nodes.client, [], Thresholds(stale_after=120), workers=1)


def test_the_newest_input_served_everywhere(duo: tuple[Duo, str], keys: tuple[Key, Key]) -> None:
    record_text(duo[0], ZONE, duo[1])
    [report] = problems(duo[0], keys)
    assert report.problems == [] and report.ok


def test_a_secondary_with_older_data(duo: tuple[Duo, str], keys: tuple[Key, Key]) -> None:
    d, text = duo
    newer = text + f"added.{ZONE}. 300 IN A 192.0.2.99\n"
    record_text(d, ZONE, newer)  # recorded now: an update under way
    [report] = problems(d, keys)
    assert report.ok and [(p.severity, p.source) for p in report.problems] == [("info", "ns1")]
    assert "1 of its records missing, 0 other" in report.problems[0].message

    path = d.backup_dir / "state" / "inputs" / f"{ZONE}.json"  # the same, recorded 5 minutes ago
    data = json.loads(path.read_text())
    data["at"] -= 300
    path.write_text(json.dumps(data))
    [report] = problems(d, keys)
    assert not report.ok
    assert [(p.severity, p.source) for p in report.problems] == [("critical", "ns1")]
    message = report.problems[0].message
    assert message.startswith("serves other data than the zone's newest input (recorded 5m")
    assert message.endswith("older data for longer than 120 s")
