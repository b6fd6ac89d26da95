"""The supervisor of a node's daemons (duo_ods.node.supervise), on a fake clock with fake processes:
a daemon "runs" while its recorded pid is in `alive`; starting one records a new pid."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from duo_ods import process
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Node
from duo_ods.errors import NodeError
from duo_ods.node import daemons, supervise, systemd
from duo_ods.node.supervise import BACKOFF_MAX, STABLE_AFTER, Health, backoff, seen_dead, started

CONFIG = """
[nodes.a]
address = "127.0.9.201"
base_dir = "a"
token_label = "A"
[nodes.b]
address = "127.0.9.202"
base_dir = "b"
token_label = "B"
[backup]
dir = "backup"
"""


class World:
    """Fake daemons: records in the node's state folder, liveness in a set, a clock by hand."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.now = 1000.0
        self.alive: set[int] = set()
        self.pids = itertools.count(100)
        self.starts: list[str] = []
        self.fail_starts = 0  # the next this many starts die at once

    def record(self, daemon: str) -> Path:
        return self.node.paths.state / f"{daemon}.json"

    def run(self, daemon: str) -> int:
        pid = next(self.pids)
        self.record(daemon).write_text(json.dumps({"name": daemon, "pid": pid, "start_time": pid}))
        self.alive.add(pid)
        return pid

    def pid(self, daemon: str) -> int:
        return int(json.loads(self.record(daemon).read_text())["pid"])

    def kill(self, daemon: str) -> None:
        self.alive.discard(self.pid(daemon))

    def start(
        self, node: Node, timeout: float = 30.0, only: tuple[str, ...] = daemons.DAEMONS
    ) -> dict[str, int]:
        (daemon,) = only
        self.starts.append(daemon)
        pid = self.run(daemon)
        if self.fail_starts:
            self.fail_starts -= 1
            self.alive.discard(pid)
            raise NodeError(f"node {node.name}: {daemon} died at start: boom")
        return {daemon: pid}

    def tick(self) -> list[supervise.Event]:
        return supervise.supervise(self.node, clock=lambda: self.now)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    (tmp_path / "duo.toml").write_text(CONFIG)
    node = load_config(tmp_path / "duo.toml").node("a")
    node.paths.conf_xml.parent.mkdir(parents=True)
    node.paths.conf_xml.write_text("<Configuration/>")
    node.paths.state.mkdir(parents=True)
    w = World(node)
    monkeypatch.setattr(process, "is_alive", lambda record: record.pid in w.alive)
    monkeypatch.setattr(daemons, "start", w.start)
    monkeypatch.setattr(systemd, "systemd_running", lambda: False)
    w.run("signerd")
    w.run("enforcerd")
    return w


def test_backoff_at_once_then_doubling_up_to_the_cap() -> None:
    assert [backoff(n) for n in range(1, 8)] == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, BACKOFF_MAX]
    assert backoff(30) == BACKOFF_MAX


def test_a_run_of_stable_after_counts_as_healthy_again() -> None:
    h = started(seen_dead(Health(), 0.0, 7, "x"), 0.0, 8)
    assert seen_dead(h, STABLE_AFTER - 1, 8, "x").in_a_row == 2
    assert seen_dead(h, STABLE_AFTER + 1, 8, "x").in_a_row == 1
    assert seen_dead(h, 1.0, 9, "x").in_a_row == 1  # pid 9: not the supervisor's (a node start)


def test_nothing_happens_while_the_daemons_run(world: World) -> None:
    assert world.tick() == []
    assert world.starts == []
    assert not supervise.state_file(world.node.paths.state).exists()


def test_a_node_whose_state_folder_is_gone_is_left_alone_and_not_made_again(world: World) -> None:
    world.kill("signerd")
    shutil.rmtree(world.node.paths.state)  # the disk lost, a wipe or a restore under way
    assert world.tick() == []
    assert world.starts == []
    assert not world.node.paths.state.exists()


def test_a_dead_signer_is_started_at_once_logged_and_counted(world: World) -> None:
    (world.node.paths.log).mkdir(parents=True)
    line = (
        "[Sun Nov 29 12:36:59 2026] ods-signerd[3] error  : [netio] fatal error pselect: Bad file descriptor"
    )
    (world.node.paths.log / "signerd.log").write_text(f"x\n{line}\n")
    old = world.pid("signerd")
    world.kill("signerd")
    (event,) = world.tick()
    assert (event.daemon, event.pid, event.action, event.restarts) == ("signerd", old, "started", 1)
    assert event.new_pid == world.pid("signerd") != old
    assert event.seen == "last log line: error: [netio] fatal error pselect: Bad file descriptor"
    assert world.starts == ["signerd"]  # the enforcer ran on
    assert supervise.restart_counts(world.node.paths.state) == {"signerd": 1, "enforcerd": 0}
    assert world.tick() == []


def test_one_that_keeps_dying_waits_longer_each_time(world: World) -> None:
    world.kill("signerd")
    assert world.tick()[0].action == "started"
    world.now += 5  # dies again soon after
    world.kill("signerd")
    (waiting,) = world.tick()
    assert (waiting.action, waiting.retry_in) == ("waiting", 10.0)
    world.now += 9
    assert world.tick() == [] and world.starts == ["signerd"]  # not yet, and said only once
    world.now += 1
    assert world.tick()[0].action == "started"
    world.now += 1
    world.kill("signerd")
    assert world.tick()[0].retry_in == 20.0
    world.now += 20
    assert world.tick()[0].action == "started"
    world.now += STABLE_AFTER + 1  # then it ran long enough: the next death is a first one again
    world.kill("signerd")
    assert world.tick()[0].action == "started"
    assert supervise.restart_counts(world.node.paths.state)["signerd"] == 4


def test_a_start_that_fails_backs_off_too(world: World) -> None:
    world.kill("enforcerd")
    world.fail_starts = 1
    (failed,) = world.tick()
    assert failed.action == "start failed" and "died at start: boom" in failed.error
    assert failed.retry_in == 10.0
    world.now += 5
    assert world.tick() == []  # the pid that died at start is not counted again
    world.now += 5
    (event,) = world.tick()
    assert event.action == "started" and world.starts == ["enforcerd", "enforcerd"]


def test_a_node_stopped_on_purpose_is_left_alone(world: World) -> None:
    daemons.stopped_path(world.node.paths.state).write_text(json.dumps({"at": 1.0}))
    world.kill("signerd")
    world.kill("enforcerd")
    assert world.tick() == [] and world.starts == []


def test_node_stop_records_it_and_node_start_ends_it(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemons, "stop_recorded", lambda state, timeout=20.0: {})
    daemons.stop(world.node)
    assert daemons.stopped_on_purpose(world.node) is not None
    monkeypatch.setattr(daemons, "_start_own", lambda node, timeout, only: {})
    monkeypatch.undo()  # the real daemons.start, with _start_own faked below
    monkeypatch.setattr(daemons, "_start_own", lambda node, timeout, only: {})
    daemons.start(world.node, only=("signerd",))
    assert daemons.stopped_on_purpose(world.node) is not None  # one daemon's start is no node start
    daemons.start(world.node)
    assert daemons.stopped_on_purpose(world.node) is None


def test_a_daemon_ods_duo_stopped_or_never_started_is_not_started(world: World) -> None:
    world.record("signerd").unlink()  # process.stop removes the record
    world.kill("enforcerd")
    (event,) = world.tick()
    assert event.daemon == "enforcerd" and world.starts == ["enforcerd"]


def test_not_while_another_process_holds_the_node_lock(world: World) -> None:
    world.kill("signerd")
    fd = os.open(world.node.paths.state / "daemons.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: as another process
        assert world.tick() == [] and world.starts == []
    finally:
        os.close(fd)
    assert world.tick()[0].action == "started"


def test_the_lock_is_reentrant_within_a_thread_and_excludes_other_threads(world: World) -> None:
    other: list[bool] = []

    def try_it() -> None:
        with daemons.held(world.node, wait=False) as got:
            other.append(got)

    with daemons.held(world.node) as outer, daemons.held(world.node) as inner:
        assert outer and inner
        thread = threading.Thread(target=try_it)
        thread.start()
        thread.join()
    assert other == [False]
    with daemons.held(world.node, wait=False) as again:
        assert again


def test_systemd_nodes_are_left_to_systemd(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd, "uses_systemd", lambda node: True)
    world.kill("signerd")
    assert world.tick() == [] and world.starts == []


def test_a_daemon_an_operator_started_again_begins_a_new_run(world: World) -> None:
    world.kill("signerd")
    assert world.tick()[0].action == "started"
    world.now += 5
    world.run("signerd")  # `node start` after a stop: a pid the supervisor did not start
    world.now += 5
    world.kill("signerd")
    assert world.tick()[0].action == "started"  # at once, no back-off
