"""One refresh with fake nodes: every source read once, one that fails is counted and left out,
the watchers' files read from the node state folders; the client's observer hook times each op."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import duo_ods.check.run
from duo_ods.check.model import Thresholds
from duo_ods.check.sources import FileSource, Source
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError
from duo_ods.metrics.exporter import Exporter
from duo_ods.metrics.gather import check, gather
from duo_ods.metrics.watchfile import StatsWriter, load_stats, stats_path
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.watch.plan import ZoneFileState
from duo_ods.watch.state import save_state, state_path
from tests.support.configs import TWO_NODES
from tests.unit.check.signer import Key, signed
from tests.unit.check.test_check_duo import ZONE, FakeNodes, key_states


class Nodes(FakeNodes):
    def __init__(self, keys: list[dict[str, Any]]) -> None:
        super().__init__(keys)
        self.on(P.STATUS, self.status)
        self.on(P.BUNDLE_LIST, lambda _t, _r: P.BundleListReply(bundles=[]))
        self.on(
            P.SNAPSHOT_GET,
            lambda _t, _r: P.SnapshotGetReply(snapshot=P.Snapshot(taken=1234.5, node="a", zones=[])),
        )
        self.on(
            P.VERIFY_RECORD,
            lambda _t, _r: P.VerifyRecordReply(last=P.VerifyResult(at=2345.5, ok=False, problems=2)),
        )

    def status(self, node: str, request: P.Empty) -> P.StatusReply:
        return P.StatusReply(
            node=node,
            address="127.0.0.1",
            port=53,
            initialised=True,
            has_database=True,
            daemons={"enforcerd": 10, "signerd": None if node == "b" else 11},
            input_dir="/x",
            zones=[ZONE],
        )


@pytest.fixture
def duo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Duo, list[dict[str, Any]]]:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    duo = load_config(tmp_path / "duo.toml")
    ksk, zsk = Key.make(flags=257), Key.make()
    zone = signed(ksk=ksk, zsk=zsk, now=int(time.time()))
    copies: list[Source] = []
    (tmp_path / "copies").mkdir()
    for name in ("a", "b", "ns1"):
        zone.to_file(str(tmp_path / "copies" / name), relativize=False, want_origin=True)
        copies.append(FileSource(name, tmp_path / "copies" / name))
    monkeypatch.setattr(duo_ods.check.run, "live_sources", lambda _duo, zone: copies)
    keys = [key_states(ksk, "KSK", "c1" * 16), key_states(zsk, "ZSK", "d1" * 16)]
    for key in keys:
        key["inception"] = 1_700_000_000  # made in 2023: past the policy's lifetimes by now
    return duo, keys


def test_one_refresh(duo: tuple[Duo, list[dict[str, Any]]]) -> None:
    config, keys = duo
    state = config.nodes["a"].paths.state
    state.mkdir(parents=True, exist_ok=True)
    save_state(state_path(state), {ZONE: ZoneFileState("d", "error", "bad file")})
    writer = StatsWriter(stats_path(state))
    writer.handled([ZONE], 1000.0)
    writer.tick(2, 1001.0)
    nodes = Nodes(keys)
    exporter = Exporter()
    client = NodeClient(nodes, [exporter.op_times.observe])
    checked = check(config, client, Thresholds())
    # the check asks each node's daemons once (is its signer running), no more
    assert [op for op in nodes.ops_called() if op == P.STATUS] == [P.STATUS, P.STATUS]
    nodes.calls.clear()
    obs = gather(config, client, checked)
    # the cheap refresh asks only the daemons; the rest comes from the check
    assert set(nodes.ops_called()) == {P.STATUS}
    assert obs.errors == [] and obs.checked_at == checked.at
    assert [r.zone for r in obs.reports] == [ZONE] and obs.reports[0].key_state_drift == 0
    assert obs.daemons == {"a": {"enforcerd": 10, "signerd": 11}, "b": {"enforcerd": 10, "signerd": None}}
    assert set(obs.keys) == {"a", "b"} and len(obs.keys["a"][ZONE]) == 2
    assert obs.bundles == 0 and obs.snapshot_taken == 1234.5
    assert obs.verify is not None and (obs.verify.at, obs.verify.ok) == (2345.5, False)
    [a, b] = obs.watchers
    assert a.files[ZONE].status == "error" and a.stats is not None and a.stats.queue == 2
    assert a.stats.events == {ZONE: 1000.0}
    assert b.files == {} and b.stats is None
    exporter.refresh(lambda: obs)
    text = exporter.text().decode()
    # the keys were made in 2023 (the fixture): past the policy's lifetimes by now
    assert 'ods_duo_keys_past_lifetime{node="a",zone="example.test"} 2.0' in text
    assert (
        # one status in the check, one in the refresh
        'ods_duo_node_operation_duration_seconds_count{operation="status",outcome="ok",target="b"} 2.0'
        in text
    )


def test_a_source_that_fails_is_counted_and_left_out(duo: tuple[Duo, list[dict[str, Any]]]) -> None:
    config, keys = duo
    nodes = Nodes(keys)
    nodes.fail.add(("backup", P.BUNDLE_LIST))
    nodes.fail.add(("b", P.STATUS))
    exporter = Exporter()
    client = NodeClient(nodes, [exporter.op_times.observe])
    obs = gather(config, client, check(config, client, Thresholds()))
    assert len(obs.errors) == 2 and any("backup bundles" in e for e in obs.errors)
    assert obs.bundles is None and set(obs.daemons) == {"a"} and obs.reports
    exporter.refresh(lambda: obs)
    text = exporter.text().decode()
    assert "ods_duo_exporter_refresh_errors 2.0" in text
    assert 'outcome="error",target="backup"} 1.0' in text


def test_before_the_first_check(duo: tuple[Duo, list[dict[str, Any]]]) -> None:
    """No check finished yet: the daemons show, no zone metrics, no check time."""
    config, keys = duo
    exporter = Exporter()
    exporter.refresh(lambda: gather(config, NodeClient(Nodes(keys)), None))
    text = exporter.text().decode()
    assert 'ods_duo_daemon_up{daemon="signerd",node="a"} 1.0' in text
    assert "ods_duo_soa_serial{" not in text and "ods_duo_exporter_check_timestamp_seconds" not in text


def test_observer_sees_failures_too() -> None:
    seen: list[tuple[str, str, bool]] = []
    nodes = FakeNodes([])
    nodes.fail.add(("a", P.ZONE_LIST))
    client = NodeClient(nodes, [lambda t, op, s, ok: seen.append((t, op, ok))])
    with pytest.raises(NodeError):
        client.call("a", P.ZONE_LIST)
    assert seen == [("a", "zone-list", False)]


def test_watch_stats_file(tmp_path: Path) -> None:
    path = stats_path(tmp_path)
    assert load_stats(path) is None
    writer = StatsWriter(path)
    writer.tick(0, 10.0)
    assert load_stats(path) is not None
    mtime = path.stat().st_mtime_ns
    writer.tick(0, 11.0)  # nothing changed, heartbeat not due: not written
    assert path.stat().st_mtime_ns == mtime and load_stats(path).at == 10.0  # type: ignore[union-attr]
    writer.tick(0, 25.0)  # heartbeat
    assert load_stats(path).at == 25.0  # type: ignore[union-attr]
    writer.handled(["x.test"], 26.0)
    writer.tick(4, 26.5)
    stats = load_stats(path)
    assert stats is not None and stats.queue == 4 and stats.events == {"x.test": 26.0}
    assert StatsWriter(path).stats.events == {"x.test": 26.0}  # a restarted watcher keeps them
    path.write_text("{not json")
    assert load_stats(path) is None
