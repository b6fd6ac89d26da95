"""`zone add FILE...`: each file checked on its own, the good ones to the nodes in batches; a bad file is
reported and the others added; a batch a node refuses is taken back from the nodes that took it. On
the protocol's fake; the real path is tests/integration/test_batch.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError
from duo_ods.protocol import ops as P
from duo_ods.zones.inputs import latest_input
from duo_ods.zones.manage import add_zones
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes


def zone_text(zone: str) -> str:
    return f"$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300\n@ IN NS ns1\n"


class Nodes(FakeNodes):
    def __init__(self, refuse_on: str | None = None) -> None:
        super().__init__()
        self.zones: dict[str, set[str]] = {"a": set(), "b": set()}
        self.refuse_on = refuse_on
        self.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
            P.ZoneEntry(name=z, policy="duo", next_change="none") for z in sorted(self.zones[n])
        ]))  # fmt: skip
        self.on(P.ZONE_ADD_BATCH, self.add)
        self.on(P.ZONE_REMOVE, self.remove)

    def add(self, node: str, r: P.ZoneBatchRequest) -> P.ZoneBatchReply:
        if node == self.refuse_on:
            raise NodeError(f"node {node}: enforcer refused")
        new = [z.zone for z in r.zones if z.zone not in self.zones[node]]
        self.zones[node].update(new)
        return P.ZoneBatchReply(node=node, added=new)

    def remove(self, node: str, r: P.ZoneRequest) -> P.ZoneRemoveReply:
        self.zones[node].discard(r.zone)
        return P.ZoneRemoveReply(node=node, zone=r.zone, removed=True)


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    config = TWO_NODES + "[watch]\nbatch_size = 2\n"
    (tmp_path / "duo.toml").write_text(config)
    return load_config(tmp_path / "duo.toml")


def files(folder: Path, zones: list[str]) -> list[Path]:
    for zone in zones:
        (folder / zone).write_text(zone_text(zone))
    return [folder / z for z in zones]


def test_a_bad_file_is_reported_and_the_others_are_added_in_batches(duo: Duo, tmp_path: Path) -> None:
    fake = Nodes()
    fake.zones["a"].add("half.test")  # on a only: added on b
    fake.zones["a"].add("both.test")
    fake.zones["b"].add("both.test")
    good = files(tmp_path, ["one.test", "two.test", "three.test", "half.test", "both.test"])
    bad = tmp_path / "bad.test"
    bad.write_text("$ORIGIN bad.test.\n@ IN A 192.0.2.1\n")
    outcomes = {o.zone: o for o in add_zones(duo, fake.client, [*good, bad, tmp_path / ".hidden.test"])}
    assert {z for z, o in outcomes.items() if o.result is None} == {"both.test", "bad.test", None}
    assert "exists on every node already" in str(outcomes["both.test"].error)
    assert str(bad) in str(outcomes["bad.test"].error)
    assert (
        fake.zones["a"] == fake.zones["b"] == {"one.test", "two.test", "three.test", "half.test", "both.test"}
    )
    half = outcomes["half.test"].result
    assert half is not None and half.added_on == ["b"] and half.already_on == ["a"]
    batches = [len(r) for r in ([c for c in fake.calls if c[1] is P.ZONE_ADD_BATCH])]
    assert len(batches) == 4  # 4 good files, batch_size 2: two batches, each to both nodes at once
    assert latest_input(duo, "one.test") is not None


def test_a_batch_a_node_refuses_is_taken_back_everywhere(duo: Duo, tmp_path: Path) -> None:
    fake = Nodes(refuse_on="b")
    outcomes = add_zones(duo, fake.client, files(tmp_path, ["one.test", "two.test"]))
    assert all(o.result is None and "node b refused them" in str(o.error) for o in outcomes)
    assert fake.zones == {"a": set(), "b": set()}
    assert latest_input(duo, "one.test") is None  # on no node: nothing to catch up to
