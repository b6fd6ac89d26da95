"""`zone remove` on a node deletes the zone from the enforcer with the node's signer stopped, and starts
the signer again after (a workaround for ODS 2.1.12's crash after a running signer drops a zone:
node/ops.py op_zone_remove)."""

from __future__ import annotations

from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import CommandError
from duo_ods.node import daemons, ops
from duo_ods.ods.parse import EnforcerZone
from duo_ods.process import ProcessRecord
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES


class Node:
    """What happens on the node, in order."""

    def __init__(self, signer_runs: bool, delete_fails: bool = False) -> None:
        self.signer_runs = signer_runs
        self.delete_fails = delete_fails
        self.events: list[str] = []

    def enforcer(self, *args: str) -> str:
        self.events.append(f"enforcer {' '.join(args)} (signer {'up' if self.signer_runs else 'down'})")
        if self.delete_fails:
            raise CommandError(["ods-enforcer", *args], 1, "error: database locked", "")
        return ""

    def running(self, node: object, daemon: str) -> ProcessRecord | None:
        return ProcessRecord(daemon, 1, 1) if daemon == "signerd" and self.signer_runs else None

    def stop_signer(self, node: object, timeout: float = 20.0) -> str:
        self.events.append("stop signer")
        self.signer_runs = False
        return "stopped"

    def start(
        self, node: object, timeout: float = 30.0, only: tuple[str, ...] = daemons.DAEMONS
    ) -> dict[str, int]:
        self.events.append(f"start {','.join(only)}")
        self.signer_runs = True
        return {"signerd": 2}


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


def fake(monkeypatch: pytest.MonkeyPatch, node: Node) -> None:
    monkeypatch.setattr(ops, "_zones", lambda n: [EnforcerZone("gone.test", "duo", "none", "gone.xml")])
    monkeypatch.setattr(ops, "enforcer", lambda n: node.enforcer)
    monkeypatch.setattr(ops, "write_zonelist", lambda duo, n, zones: node.events.append(f"zonelist {zones}"))
    monkeypatch.setattr(daemons, "running", node.running)
    monkeypatch.setattr(daemons, "stop_signer", node.stop_signer)
    monkeypatch.setattr(daemons, "start", node.start)


def test_the_enforcer_deletes_the_zone_while_the_signer_is_stopped(
    duo: Duo, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = Node(signer_runs=True)
    fake(monkeypatch, node)
    reply = ops.op_zone_remove(duo, duo.nodes["a"], P.ZoneRequest(zone="gone.test"))
    assert reply.removed
    assert node.events == [
        "stop signer", "enforcer zone delete --zone gone.test (signer down)", "start signerd", "zonelist []",
    ]  # fmt: skip


def test_a_stopped_signer_is_not_started(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(signer_runs=False)
    fake(monkeypatch, node)
    ops.op_zone_remove(duo, duo.nodes["a"], P.ZoneRequest(zone="gone.test"))
    assert node.events == ["enforcer zone delete --zone gone.test (signer down)", "zonelist []"]


def test_the_signer_is_started_again_when_the_delete_fails(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(signer_runs=True, delete_fails=True)
    fake(monkeypatch, node)
    with pytest.raises(CommandError):
        ops.op_zone_remove(duo, duo.nodes["a"], P.ZoneRequest(zone="gone.test"))
    assert node.events[-1] == "start signerd" and node.signer_runs
