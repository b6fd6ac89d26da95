"""relay-sync's steps on a node, with the signer's and the relay's answers stubbed (the real path is
tests/integration/test_catalog.py): a zone reaches the relay once the signer serves it, the catalog
once the relay serves it, leaves both with the node; the catalog serial only moves forward."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dns.zone
import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.dns.tsig import ensure_tsig_key
from duo_ods.relay import sync
from tests.support.configs import TWO_NODES

CONFIG = 'name = "lab"\n' + TWO_NODES + """[[secondaries]]
name = "ns1"
address = "127.0.0.13"
"""


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    duo = load_config(tmp_path / "duo.toml")
    ensure_tsig_key(duo.tsig_key_path, "duo-transfer", "hmac-sha256")
    return duo


class World:
    """What the signer and the relay serve, and which outputs the signer wrote."""

    def __init__(self, duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
        self.node = duo.nodes["a"]
        self.signer: set[str] = set()
        self.relay: set[str] = set()
        monkeypatch.setattr(sync, "soa_serial", self.soa)
        monkeypatch.setattr(sync, "relay_pid", lambda node: 4242)
        self.hups = 0
        monkeypatch.setattr(sync.os, "kill", self.kill)

    def soa(self, address: str, port: int, zone: str, key: object = None, timeout: float = 0) -> int | None:
        served = self.signer if port == self.node.port else self.relay
        return 1 if zone in served else None

    def kill(self, pid: int, sig: int) -> None:
        assert pid == 4242
        self.hups += 1

    def sign(self, zone: str) -> None:
        self.node.paths.signer_dir.mkdir(parents=True, exist_ok=True)
        (self.node.paths.signer_dir / f"{zone}.axfr").write_text("")
        self.signer.add(zone)


def members(duo: Duo) -> list[str]:
    path = sync.relay_files(duo.nodes["a"])["catalog"]
    z = dns.zone.from_text(path.read_text(), origin="lab.catalog.invalid.", relativize=False)
    return sorted(str(rr.target) for _, rds in z.iterate_rdatasets("PTR") for rr in rds)


def test_a_zone_goes_relay_first_then_catalog_and_leaves_with_the_node(
    duo: Duo, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(duo, monkeypatch)
    node = duo.nodes["a"]
    first = sync.sync_relay(duo, node, ["new.test"])
    assert first.zones == [] and first.members == []  # not signed yet: not even asked
    world.signer.add("new.test")  # served, but no output file: still not asked
    assert sync.sync_relay(duo, node, ["new.test"]).zones == []
    world.sign("new.test")
    carried = sync.sync_relay(duo, node, ["new.test"])
    assert carried.zones == ["new.test"] and carried.members == [] and carried.reloaded
    assert 'zone "new.test"' in sync.relay_files(node)["zones"].read_text()
    assert sync.sync_relay(duo, node, ["new.test"]).members == []  # the relay has not loaded it yet
    world.relay.add("new.test")
    listed = sync.sync_relay(duo, node, ["new.test"])
    assert listed.members == ["new.test"] and members(duo) == ["new.test."]
    assert listed.serial is not None and first.serial is not None and listed.serial > first.serial
    hups = world.hups
    same = sync.sync_relay(duo, node, ["new.test"])
    assert not same.changed and world.hups == hups and same.serial == listed.serial  # nothing to do
    gone = sync.sync_relay(duo, node, [])
    assert gone.zones == [] and gone.members == [] and members(duo) == []
    assert gone.serial is not None and gone.serial > listed.serial
    assert 'zone "new.test"' not in sync.relay_files(node)["zones"].read_text()


def test_a_hung_signer_is_asked_once_per_sync(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(duo, monkeypatch)
    asked: list[str] = []

    def hung(address: str, port: int, zone: str, key: object = None, timeout: float = 0) -> int | None:
        asked.append(zone)
        sync.time.sleep(timeout)
        return None

    for zone in ("a.test", "b.test", "c.test"):
        world.sign(zone)
    monkeypatch.setattr(sync, "soa_serial", hung)
    monkeypatch.setattr(sync, "PROBE_TIMEOUT", 0.05)
    assert sync.sync_relay(duo, duo.nodes["a"], ["a.test", "b.test", "c.test"]).zones == []
    assert asked == ["a.test"]


def test_the_relay_reads_its_own_copy_of_the_transfer_key(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    """named drops to user bind: the relay's named.conf names a copy group bind may read (0640), the
    duo's own key file stays root's alone; a changed key is copied again."""
    World(duo, monkeypatch)
    node = duo.nodes["a"]
    sync.sync_relay(duo, node, [])
    files = sync.relay_files(node)
    assert files["key"].read_text() == duo.tsig_key_path.read_text()
    assert files["key"].stat().st_mode & 0o777 in (0o640, 0o600)  # 0600 where there is no bind group
    assert f'include "{files["key"]}";' in files["conf"].read_text()
    assert str(duo.tsig_key_path) not in files["conf"].read_text()
    assert not sync.copy_transfer_key(duo, node)  # unchanged: not rewritten
    text = duo.tsig_key_path.read_text()
    duo.tsig_key_path.write_text(text.replace('secret "', 'secret "AAAA'))
    assert sync.copy_transfer_key(duo, node)
    assert files["key"].read_text() == duo.tsig_key_path.read_text()


def test_two_syncs_of_one_relay_take_turns(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's ticker and a command sync the same relay at once: one waits for the other (they
    wrote the same named.conf.new, and each its own member list under one catalog serial)."""
    world = World(duo, monkeypatch)
    node = duo.nodes["a"]
    for zone in ("one.test", "two.test"):
        world.sign(zone)
    spans: list[tuple[float, float]] = []
    real_check = sync.check_named_conf

    def slow_check(path: Path) -> None:
        began = time.monotonic()
        time.sleep(0.2)
        real_check(path)
        spans.append((began, time.monotonic()))

    monkeypatch.setattr(sync, "check_named_conf", slow_check)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(zones: list[str]) -> None:
        start.wait()
        try:
            sync.sync_relay(duo, node, zones)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(z,)) for z in (["one.test"], ["one.test", "two.test"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(spans) == 2
    first, second = sorted(spans)
    assert first[1] <= second[0]  # the second began after the first ended
