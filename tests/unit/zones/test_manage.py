"""Zone add across nodes is all or none. The transport here is a fake: the real path is in
tests/integration/test_lab.py, which adds and refuses zones on real enforcers."""

from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError, ZoneFileError
from duo_ods.keys.reuse import load_removed
from duo_ods.protocol import ops as P
from duo_ods.zones.inputs import latest_input
from duo_ods.zones.manage import add_zone, list_zones, remove_zone
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

CONFIG = TWO_NODES

ZONE = """$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300
@ IN NS ns1
ns1 IN A 192.0.2.1
"""


class FakeTransport(FakeNodes):
    """Holds zones per node; can be told to refuse zone-add on one node."""

    def __init__(self, refuse_on: str | None = None) -> None:
        super().__init__()
        self.zones: dict[str, list[str]] = {"a": [], "b": []}
        self.refuse_on = refuse_on
        self.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
            P.ZoneEntry(name=z, policy="duo", next_change="none") for z in self.zones[n]]))  # fmt: skip
        self.on(P.ZONE_ADD, self.add)
        self.on(P.ZONE_REMOVE, self.remove)
        self.watched: dict[str, list[str]] = {"a": [], "b": []}
        self.on(P.INPUT_STATE, lambda n, r: P.InputStateReply(
            node=n, enforcer=True, signer=True, zones=[], watched=self.watched[n]))  # fmt: skip

    def add(self, node: str, request: P.ZoneInput) -> P.ZoneAddReply:
        if node == self.refuse_on:
            raise NodeError(f"node {node}: enforcer refused")
        assert request.text.startswith("example.test.")  # the checked text, not the raw file
        self.zones[node].append(request.zone)
        return P.ZoneAddReply(node=node, zone=request.zone, added=True)

    def remove(self, node: str, request: P.ZoneRequest) -> P.ZoneRemoveReply:
        present = request.zone in self.zones[node]
        if present:
            self.zones[node].remove(request.zone)
        return P.ZoneRemoveReply(node=node, zone=request.zone, removed=present)


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    (tmp_path / "example.test").write_text(ZONE)
    return load_config(tmp_path / "duo.toml")


def test_add_on_every_node(duo: Duo, tmp_path: Path) -> None:
    fake = FakeTransport()
    result = add_zone(duo, fake.client, "Example.Test.", tmp_path / "example.test")
    assert result.added_on == ["a", "b"]
    assert result.serial == 2026112800
    assert fake.zones == {"a": ["example.test"], "b": ["example.test"]}
    rows, down = list_zones(duo, fake.client)
    assert down == {}
    assert rows[0]["zone"] == "example.test" and rows[0]["on_all_nodes"]


def test_refusal_on_second_node_undoes_first(duo: Duo, tmp_path: Path) -> None:
    fake = FakeTransport(refuse_on="b")
    with pytest.raises(NodeError, match=r"zone example\.test: node b refused it, nothing changed"):
        add_zone(duo, fake.client, "example.test", tmp_path / "example.test")
    assert fake.zones == {"a": [], "b": []}
    assert ("a", P.ZONE_REMOVE) in fake.calls


def test_bad_file_touches_no_node(duo: Duo, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zone"
    bad.write_text(ZONE + "www.example.org. IN A 192.0.2.2\n")
    fake = FakeTransport()
    with pytest.raises(ZoneFileError, match=r"bad.zone:6: "):
        add_zone(duo, fake.client, "example.test", bad)
    assert fake.calls == []


def test_rerun_completes_a_partial_add(duo: Duo, tmp_path: Path) -> None:
    fake = FakeTransport()
    fake.zones["a"].append("example.test")
    result = add_zone(duo, fake.client, "example.test", tmp_path / "example.test")
    assert result.already_on == ["a"] and result.added_on == ["b"]
    with pytest.raises(NodeError, match="exists on every node"):
        add_zone(duo, fake.client, "example.test", tmp_path / "example.test")


def test_remove(duo: Duo, tmp_path: Path) -> None:
    fake = FakeTransport()
    key = P.KeyStateMsg(zone="example.test", locator="0" * 32, role="KSK", algorithm=13, inception=1,
                        keytag=7, flags={"introducing": 1}, records=[])  # fmt: skip
    fake.on(P.KEY_STATES, lambda n, r: P.KeyStatesReply(node=n, zones=[
        P.ZoneStateMsg(zone="example.test", fields={}, keys=[key], dependencies=[])]))  # fmt: skip
    with pytest.raises(NodeError, match="not on any node"):
        remove_zone(duo, fake.client, "example.test")
    add_zone(duo, fake.client, "example.test", tmp_path / "example.test")
    assert remove_zone(duo, fake.client, "example.test") == {"a": True, "b": True}
    record = load_removed(duo, "example.test")  # its live keys, kept for its return
    assert record is not None and [k.keytag for k in record.states.keys] == [7]


def test_add_applies_the_configured_record_limit(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(CONFIG + "[input]\nmax_records = 4\n")
    duo = load_config(tmp_path / "duo.toml")
    bomb = tmp_path / "example.test"
    bomb.write_text(ZONE + "$GENERATE 1-2 h$ IN A 192.0.2.1\n")
    fake = FakeTransport()
    with pytest.raises(ZoneFileError) as info:
        add_zone(duo, fake.client, "example.test", bomb)
    assert str(info.value) == (
        f"{bomb}:6: $GENERATE 1-2 makes 2 records on top of the 3 before it, "
        "more than the limit of 4 (the [input] max_records limit)."
    )
    assert fake.calls == []


def test_add_applies_the_configured_size_limit(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(CONFIG + "[input]\nmax_bytes = 20\n")
    duo = load_config(tmp_path / "duo.toml")
    (tmp_path / "example.test").write_text(ZONE)
    with pytest.raises(ZoneFileError, match="bigger than the limit of 20 bytes"):
        add_zone(duo, FakeTransport().client, "example.test", tmp_path / "example.test")


def test_a_refused_add_leaves_no_newest_input_record(duo: Duo, tmp_path: Path) -> None:
    fake = FakeTransport(refuse_on="b")
    with pytest.raises(NodeError):
        add_zone(duo, fake.client, "example.test", tmp_path / "example.test")
    assert latest_input(duo, "example.test") is None
    add_zone(duo, FakeTransport().client, "example.test", tmp_path / "example.test")
    record = latest_input(duo, "example.test")
    assert record is not None and record.serial == 2026112800
