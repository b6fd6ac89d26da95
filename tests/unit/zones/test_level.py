"""Which node serial levelling brings up, and to what."""

from __future__ import annotations

from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.protocol import ops as P
from duo_ods.zones import level
from duo_ods.zones.inputs import record_input
from duo_ods.zones.level import lagging
from duo_ods.zones.validate import check_zone_text
from tests.support.configs import THREE_NODES, TWO_NODES
from tests.support.fake_nodes import FakeNodes


def test_a_node_further_behind_than_the_bound_is_brought_to_the_leader() -> None:
    assert lagging({"a": 2026112816, "b": 2026112806}, 5) == (2026112816, ["b"])


def test_within_the_bound_nothing_moves() -> None:
    assert lagging({"a": 2026112810, "b": 2026112805}, 5) == (2026112810, [])


def test_a_silent_node_is_left_alone_and_one_answer_is_not_enough() -> None:
    assert lagging({"a": 2026112816, "b": None}, 0) == (None, [])
    assert lagging({"a": 2026112816, "b": None, "c": 2026112801}, 0) == (2026112816, ["c"])


def test_a_node_with_input_newer_than_the_record_is_not_levelled_to_the_leaders_serial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Levelling re-signs the node's own input at the leader's serial: with other input than the
    leader's, that would be one serial with two contents."""
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    duo = load_config(tmp_path / "duo.toml")
    text = (
        "example.test. 300 IN SOA ns1.example.test. h.example.test. 1 3600 600 864000 300\n"
        "example.test. 300 IN NS ns1.example.test.\nns1.example.test. 300 IN A 192.0.2.1\n"
    )
    record = record_input(duo, check_zone_text(text, "example.test", source="test"), now=100.0)
    fake = FakeNodes()
    inputs = {"a": P.NodeInput(zone="example.test", digest=record.digest, mtime=100.0),
              "b": P.NodeInput(zone="example.test", digest="other", mtime=500.0)}  # fmt: skip
    fake.on(
        P.INPUT_STATE, lambda n, r: P.InputStateReply(node=n, enforcer=True, signer=True, zones=[inputs[n]])
    )
    fake.on(P.ZONE_RESIGN, lambda n, r: P.ZoneResignReply(node=n, zone=r.zone, serial=r.serial))
    monkeypatch.setattr(level, "served_serials", lambda duo, zone: {"a": 2026112816, "b": 2026112806})
    result = level.level_zone(duo, fake.client, "example.test", 5)
    assert result["levelled"] == [] and "not levelled" in result["failed"]["b"]
    assert P.ZONE_RESIGN not in fake.ops_called()


def test_three_nodes_every_lagging_node_is_brought_up_and_one_failing_does_not_stop_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "duo.toml").write_text(THREE_NODES)
    duo = load_config(tmp_path / "duo.toml")
    assert list(duo.nodes) == ["a", "b", "c"]
    text = (
        "example.test. 300 IN SOA ns1.example.test. h.example.test. 1 3600 600 864000 300\n"
        "example.test. 300 IN NS ns1.example.test.\nns1.example.test. 300 IN A 192.0.2.1\n"
    )
    record = record_input(duo, check_zone_text(text, "example.test", source="test"), now=100.0)
    fake = FakeNodes()
    same = P.NodeInput(zone="example.test", digest=record.digest, mtime=100.0)
    fake.on(P.INPUT_STATE, lambda n, r: P.InputStateReply(node=n, enforcer=True, signer=True, zones=[same]))
    fake.on(P.ZONE_RESIGN, lambda n, r: P.ZoneResignReply(node=n, zone=r.zone, serial=r.serial))
    fake.fail.add(("c", P.ZONE_RESIGN))
    served = {"a": 2026112816, "b": 2026112806, "c": 2026112801}
    monkeypatch.setattr(level, "served_serials", lambda duo, zone: served)
    result = level.level_zone(duo, fake.client, "example.test", 5)
    assert result["target"] == 2026112816
    assert result["levelled"] == ["b"] and list(result["failed"]) == ["c"]
    assert sorted(n for n, op in fake.calls if op is P.ZONE_RESIGN) == ["b", "c"]
