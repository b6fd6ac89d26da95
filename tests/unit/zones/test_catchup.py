"""Catch-up planning (want / observe / plan), the newest-input choice, the content digest, and the
controller paths that record the newest input and report who missed it. The real path (real signers,
a secondary, a node stopped and started) is tests/integration/test_freshness.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dns.zone
import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import NodeError
from duo_ods.keys.listing import list_keys
from duo_ods.node import ops as O
from duo_ods.node.configs import write_zonelist
from duo_ods.protocol import ops as P
from duo_ods.watch.plan import ZoneFileState
from duo_ods.watch.state import save_state, state_path
from duo_ods.zones import catchup, manage
from duo_ods.zones.catchup import Input, NodeView, Want, plan_catch_up
from duo_ods.zones.content import Copy, content_digest, text_content_digest
from duo_ods.zones.inputs import Candidate, latest_input, newest_input, record_input, text_digest
from duo_ods.zones.validate import check_zone_text
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ZONE = "example.test"
TEXT = """$ORIGIN example.test.
$TTL 300
@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300
@ IN NS ns1
ns1 IN A 192.0.2.1
"""
NEW = TEXT.replace("2026112800", "2026112801") + "www IN A 192.0.2.80\n"


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


# --- plan ---------------------------------------------------------------------------------


def test_plan_writes_to_a_stopped_node_and_signs_on_a_running_one() -> None:
    want = {ZONE: Want(ZONE, "new", at=100.0)}
    views = {
        "a": NodeView("a", signer=True, inputs={ZONE: Input("new", 100.0)}),
        "b": NodeView("b", signer=False, inputs={ZONE: Input("old", 50.0)}),
        "c": NodeView("c", signer=True, inputs={ZONE: Input("old", 50.0)}),
    }
    steps = plan_catch_up(want, views)
    assert [(s.node, s.zone, s.action) for s in steps] == [("b", ZONE, "write"), ("c", ZONE, "sign")]
    assert plan_catch_up(want, {"a": views["a"]}) == []  # idempotent: nothing when everything matches


def test_plan_levels_input_stored_while_the_signer_was_down_once_it_runs() -> None:
    want = {ZONE: Want(ZONE, "new", at=100.0)}
    stopped = NodeView("b", signer=False, inputs={ZONE: Input("new", 101.0, pending=True)})
    running = NodeView("b", signer=True, inputs={ZONE: Input("new", 101.0, pending=True)})
    assert plan_catch_up(want, {"b": stopped}) == []  # node start levels it after the start
    assert [s.action for s in plan_catch_up(want, {"b": running})] == ["level"]


def test_plan_leaves_what_it_must_not_touch() -> None:
    want = {ZONE: Want(ZONE, "new", at=100.0), "other.test": Want("other.test", "x", at=1.0)}
    views = {
        "a": NodeView("a", error="node a: cannot reach it"),
        "b": NodeView("b", signer=True, inputs={ZONE: Input("newer", 200.0)}),
    }
    steps = {(s.node, s.zone): s.action for s in plan_catch_up(want, views)}
    assert steps == {
        ("a", "*"): "unreachable",
        ("b", ZONE): "newer-on-node",  # written after the record by something else: not overwritten
        ("b", "other.test"): "not-on-node",  # zone add adds zones (with keys), not catch-up
    }


# --- the newest input ---------------------------------------------------------------------


def test_the_record_wins_over_a_snapshot_and_over_an_older_peer_input() -> None:
    record = Candidate("record", NEW, 100.0)
    snapshot = Candidate("snapshot", TEXT, 500.0)  # taken later, from a node that had missed it
    peer_old = Candidate("peer a", TEXT, 50.0)
    assert newest_input(record, None, snapshot) is record
    assert newest_input(record, peer_old, None) is record
    assert newest_input(None, None, snapshot) is snapshot
    assert newest_input(None, peer_old, snapshot) is peer_old
    assert newest_input(None, None, None) is None


def test_a_peer_input_written_after_the_record_wins() -> None:
    record = Candidate("record", TEXT, 100.0)
    peer = Candidate("peer a", NEW, 200.0)
    assert newest_input(record, peer, None) is peer
    same = Candidate("peer a", TEXT, 300.0)
    assert newest_input(record, same, None) is record


# --- content digest -----------------------------------------------------------------------


def test_content_digest_ignores_what_each_signer_makes() -> None:
    signed = dns.zone.from_text(
        TEXT.replace("2026112800", "2026112877")
        + "@ 300 IN DNSKEY 257 3 13 bWFkZSB1cA==\n"
        + "@ 0 IN NSEC3PARAM 1 0 0 -\n"
        + "ns1 300 IN RRSIG A 13 3 300 20261230000000 20261129000000 1 example.test. bWFkZSB1cA==\n",
        origin="example.test.",
        relativize=False,
    )
    assert content_digest(signed) == text_content_digest(TEXT, ZONE)
    assert text_content_digest(NEW, ZONE) != text_content_digest(TEXT, ZONE)


# --- zone update records first and says who missed it -------------------------------------


class Nodes(FakeNodes):
    def __init__(self, down: set[str], stopped: set[str]) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.on(P.ZONE_UPDATE, self.update)
        self.down, self.stopped = down, stopped

    def update(self, node: str, request: P.ZoneUpdateRequest) -> P.ZoneUpdateReply:
        if node in self.down:
            raise NodeError(f"node {node}: cannot reach it")
        self.texts[node] = request.text
        if node in self.stopped:
            return P.ZoneUpdateReply(node=node, zone=request.zone, signing=False, note="signer down")
        return P.ZoneUpdateReply(node=node, zone=request.zone, signing=True)


def _checked() -> manage.CheckedZone:
    return check_zone_text(NEW, ZONE, source="test")


def test_update_records_the_input_and_names_the_nodes_that_missed_it(
    duo: Duo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manage, "served_serials", lambda duo, zone: {"a": 2026112805, "b": None})
    monkeypatch.setattr(manage, "secondary_serials", lambda duo, zone: {})
    monkeypatch.setattr(manage, "_wait_served", lambda duo, zone, nodes, target: {"a": target, "b": None})
    monkeypatch.setattr(manage, "notify_secondaries", lambda duo, zone: {})
    fake = Nodes(down={"b"}, stopped=set())
    result = manage.update_checked(duo, fake.client, _checked(), ["a", "b"])
    assert result["nodes"]["a"]["status"] == "signed"
    assert result["nodes"]["b"]["status"] == "missed"
    assert result["missed"] == ["b"] and result["ok"] is False
    summary = manage.missed_summary(result)
    assert summary is not None and "node b missed the update" in summary
    assert summary.endswith("it catches up when it returns")
    record = latest_input(duo, ZONE)
    assert record is not None and record.digest == text_digest(fake.texts["a"])

    stopped = Nodes(down=set(), stopped={"b"})
    result = manage.update_checked(duo, stopped.client, _checked(), ["a", "b"])
    assert result["nodes"]["b"]["status"] == "stored" and result["missed"] == ["b"]


def test_update_goes_above_a_secondary_that_holds_a_higher_serial(
    duo: Duo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ns1 took b's copy at a high serial before b died: below that, a's new data would never reach it.
    monkeypatch.setattr(manage, "served_serials", lambda duo, zone: {"a": 2026112805, "b": None})
    monkeypatch.setattr(manage, "secondary_serials", lambda duo, zone: {"ns1": 4000000009})
    monkeypatch.setattr(manage, "_wait_served", lambda duo, zone, nodes, target: {"a": target})
    monkeypatch.setattr(manage, "notify_secondaries", lambda duo, zone: {})
    result = manage.update_checked(duo, Nodes(set(), set()).client, _checked(), ["a"])
    assert result["output_serial"] == 4000000010


# --- zone remove, zone list and key list with a node down ----------------------------------


def test_remove_refuses_while_the_file_is_watched(duo: Duo, tmp_path: Path) -> None:
    fake = FakeNodes()
    fake.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
        P.ZoneEntry(name=ZONE, policy="duo", next_change="none")]))  # fmt: skip
    inputs = duo.nodes["a"].input_dir
    inputs.mkdir(parents=True)
    (inputs / f"{ZONE}.zone").write_text(TEXT)

    def state(node: str, request: P.InputStateRequest) -> P.InputStateReply:
        folder = duo.nodes[node].input_dir
        files = sorted(str(p) for p in folder.glob(f"{ZONE}*")) if folder.is_dir() else []
        return P.InputStateReply(node=node, enforcer=True, signer=True, zones=[], watched=files)

    fake.on(P.INPUT_STATE, state)
    fake.on(P.ZONE_REMOVE, lambda n, r: P.ZoneRemoveReply(node=n, zone=r.zone, removed=True))
    fake.on(P.KEY_STATES, lambda n, r: P.KeyStatesReply(node=n, zones=[]))  # no keys to keep
    record_input(duo, _checked())
    with pytest.raises(manage.InputFileStillThere, match="delete the file first or pass --delete-file"):
        manage.remove_zone(duo, fake.client, ZONE)
    assert P.ZONE_REMOVE not in fake.ops_called()
    assert manage.remove_zone(duo, fake.client, ZONE, delete_file=True) == {"a": True, "b": True}
    assert not (inputs / f"{ZONE}.zone").exists()
    assert latest_input(duo, ZONE) is None  # nothing to catch up to any more


def test_zone_list_and_key_list_mark_a_node_that_is_down(duo: Duo) -> None:
    fake = FakeNodes()
    fake.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
        P.ZoneEntry(name=ZONE, policy="duo", next_change="none")]))  # fmt: skip
    key = P.EnforcerKeyMsg(zone=ZONE, role="KSK", state="active", next="", bits=256, algorithm=13,
                           locator="0" * 32, keytag=1, records=None)  # fmt: skip
    fake.on(P.KEY_LIST, lambda n, r: P.KeyListReply(node=n, keys=[key]))
    fake.fail = {("b", P.ZONE_LIST), ("b", P.KEY_LIST)}
    rows, down = manage.list_zones(duo, fake.client)
    assert list(down) == ["b"] and rows[0]["nodes"].keys() == {"a"} and rows[0]["unknown_on"] == ["b"]
    [row] = list_keys(duo, fake.client)
    assert row["nodes"]["b"]["down"] is True and row["differs"] is False and row["missing_on"] == []
    fake.fail.add(("a", P.KEY_LIST))
    with pytest.raises(NodeError, match="no node answers"):
        list_keys(duo, fake.client)


# --- node side: new input reaches a node whose daemons are down ----------------------------


def test_zone_update_on_a_stopped_node_stores_the_input_and_marks_it_pending(duo: Duo) -> None:
    node = duo.nodes["b"]
    write_zonelist(duo, node, [ZONE])
    reply = O.op_zone_update(duo, node, P.ZoneUpdateRequest(zone=ZONE, text=NEW))
    assert reply.signing is False and "signer down" in (reply.note or "")
    assert node.paths.unsigned_zone(ZONE).read_text() == NEW
    state = O.op_input_state(duo, node, P.InputStateRequest())
    [entry] = state.zones
    assert entry.digest == hashlib.sha256(NEW.encode()).hexdigest() and entry.pending
    assert state.enforcer is False and state.signer is False
    with pytest.raises(NodeError, match="not on this node"):
        O.op_zone_update(duo, node, P.ZoneUpdateRequest(zone="other.test", text=NEW))


# --- node start: the newest input before the signer starts ---------------------------------


def test_node_start_writes_the_missed_input_before_the_daemons_start(
    duo: Duo, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = record_input(duo, _checked())
    fake = FakeNodes()
    written: dict[str, str] = {}
    fake.on(P.INPUT_STATE, lambda n, r: P.InputStateReply(node=n, enforcer=False, signer=False, zones=[
        P.NodeInput(zone=ZONE, digest="old", mtime=1.0)]))  # fmt: skip

    def update(node: str, request: P.ZoneUpdateRequest) -> P.ZoneUpdateReply:
        assert P.START not in fake.ops_called(), "input written after the signer started"
        written[node] = request.text
        return P.ZoneUpdateReply(node=node, zone=request.zone, signing=False, note="signer down")

    fake.on(P.ZONE_UPDATE, update)
    fake.on(P.START, lambda n, r: P.StartReply(node=n, pids={"signerd": 1, "enforcerd": 2}))
    levelled: list[str] = []
    monkeypatch.setattr(catchup, "_sign_at", lambda duo, client, node, rec, resign: levelled.append(
        f"{node} {rec.zone} {resign}") or {"serial": 1})  # fmt: skip
    result = catchup.start_node(duo, fake.client, "b")
    assert fake.ops_called() == [P.INPUT_STATE, P.ZONE_UPDATE, P.START]
    assert written == {"b": record.text}
    assert levelled == [f"b {ZONE} True"]  # then signed above any stale copy
    assert result["caught_up"] == [ZONE] and result["failed"] == {}


def test_zone_list_drops_refused_files_that_are_gone(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    node = duo.nodes["a"]
    node.input_dir.mkdir(parents=True)
    still = node.input_dir / "bad.test"
    still.write_text("garbage")
    save_state(state_path(node.paths.state), {
        "bad.test": ZoneFileState("x", "error", f"{still}:1: no SOA", str(still)),
        "gone.test": ZoneFileState("y", "error", "gone.test:1: no SOA", str(node.input_dir / "gone.test")),
    })  # fmt: skip
    monkeypatch.setattr(O, "_zones", lambda node: [])
    reply = O.op_zone_list(duo, node, P.Empty())
    assert [r.zone for r in reply.refused] == ["bad.test"]


def test_a_sign_request_the_signer_dropped_is_sent_again(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    """ODS 2.1.12 may merge a sign request into the pass under way (just after `node start`), which
    read the older input: the node serves the asked serial with old content. The catch-up asks again
    (above its own stale copy) and then sees the newest content."""
    record = record_input(duo, check_zone_text(NEW, ZONE, source="test"))
    newest = text_content_digest(record.text, ZONE)
    asked: list[int] = []
    # Served serials above any date-based floor until 2099, so that the next one is "one above both"
    # whatever today is (a serial of today's date would be below the floor tomorrow).
    served = {"serial": 2099010100, "digest": "old"}
    monkeypatch.setattr(catchup, "NUDGE_AFTER", 0.2)
    monkeypatch.setattr(catchup, "notify_secondaries", lambda duo, zone: {})

    def fetch(self: catchup.Copies, zone: str) -> dict[str, Copy | None]:
        return {"signer a": Copy(served["serial"], served["digest"]), "signer b": Copy(2099010100, newest)}

    monkeypatch.setattr(catchup.Copies, "fetch", fetch)
    monkeypatch.setattr(catchup, "served_copy", lambda *a: Copy(served["serial"], served["digest"]))

    def resign(node: str, r: P.ZoneResignRequest) -> P.ZoneResignReply:
        asked.append(r.serial)
        if len(asked) == 2:  # the first request was dropped; the second one is signed
            served.update(serial=r.serial, digest=newest)
        return P.ZoneResignReply(node=node, zone=r.zone, serial=r.serial)

    nodes = FakeNodes()
    nodes.on(P.ZONE_RESIGN, resign)
    result = catchup._sign_at(duo, nodes.client, "a", record, resign=True)
    # b serves the newest at ...00 and a's stale copy has that serial too: one above both, twice
    assert asked == [2099010101, 2099010101]
    assert result["serial"] == 2099010101
