"""The watcher with a fake node: bad input directory entries are reported in one line each, the watcher
runs on, and a zone keeps its last good data. The real lab is in tests/integration/test_input_limits.py."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.protocol import ops as P
from duo_ods.watch import service
from duo_ods.watch.plan import ZoneFileState, digest_of
from duo_ods.watch.service import Watcher
from duo_ods.watch.state import load_state
from duo_ods.zones.manage import check_file
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ZONE = "example.test"
MARKER = "MARKER-not-for-logs-7d2e"


def zone_text(zone: str = ZONE, extra: str = "") -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300\n"
        f"@ IN NS ns1\nns1 IN A 192.0.2.1\n{extra}"
    )


class FakeNode(FakeNodes):
    """Node a: holds zones; records every call."""

    def __init__(self, zones: dict[str, str] | None = None) -> None:
        super().__init__()
        self.zones = dict(zones or {})
        self.on(P.ZONE_LIST, lambda n, r: P.ZoneListReply(node=n, zones=[
            P.ZoneEntry(name=z, policy="duo", next_change="none") for z in self.zones]))  # fmt: skip
        self.on(P.ZONE_ADD_BATCH, self.add_batch)
        self.on(P.ZONE_REMOVE, self.remove)
        self.on(P.KEY_STATES, lambda n, r: P.KeyStatesReply(node=n, zones=[]))  # no keys to record
        self.on(P.RELAY_SYNC, lambda n, r: P.RelaySyncReply(  # the watcher's relay tick: nothing signed
            node=n, zones=[], members=[], catalog="duo.catalog.invalid", serial=None, changed=False,
            reloaded=False))  # fmt: skip
        self.supervised: list[P.SuperviseEvent] = []  # what the node's supervisor answers next
        self.on(P.SUPERVISE, self.supervise)

    def supervise(self, node: str, request: P.Empty) -> P.SuperviseReply:
        events, self.supervised = self.supervised, []
        return P.SuperviseReply(node=node, events=events)

    def add_batch(self, node: str, request: P.ZoneBatchRequest) -> P.ZoneBatchReply:
        for item in request.zones:
            self.zones[item.zone] = item.text
        return P.ZoneBatchReply(node=node, added=[item.zone for item in request.zones])

    def remove(self, node: str, request: P.ZoneRequest) -> P.ZoneRemoveReply:
        self.zones.pop(request.zone, None)
        return P.ZoneRemoveReply(node=node, zone=request.zone, removed=True)

    def changes(self) -> list[str]:
        return [op.name for _, op in self.calls if not op.reads_only]


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    config = TWO_NODES + "[watch]\nremove_zones = true\n[serials]\nlevel_interval = 0\n"
    config = config.replace('dir = "backup"', 'dir = "backup"\nsnapshot_interval = 0')
    (tmp_path / "duo.toml").write_text(config)
    duo = load_config(tmp_path / "duo.toml")
    duo.nodes["a"].input_dir.mkdir(parents=True)
    return duo


def watcher(duo: Duo, node: FakeNode) -> Watcher:
    return Watcher(duo, duo.nodes["a"], node.client)


@contextmanager
def running(w: Watcher, tick: float) -> Iterator[threading.Thread]:
    """The watcher's loop in a thread for the block, stopped and joined after it."""
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop, tick))
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=10)


def inbox(duo: Duo) -> Path:
    return duo.nodes["a"].input_dir


def one_line_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno >= level]
    assert all("\n" not in line for line in lines), lines
    return lines


def with_good_zone(duo: Duo, node: FakeNode) -> Watcher:
    """example.test added from its file and recorded as good, as after a first run."""
    (inbox(duo) / ZONE).write_text(zone_text())
    w = watcher(duo, node)
    w.reconcile(None)
    assert w.state[ZONE].status == "ok" and ZONE in node.zones
    node.calls.clear()
    return w


def vanish_first(real: Callable[..., Any], path: Path) -> Callable[..., Any]:
    """`real`, but the file disappears just before the first call reads it: the race, every time."""

    def racing(*args: Any, **kwargs: Any) -> Any:
        if path.exists():
            path.unlink()
        return real(*args, **kwargs)

    return racing


# --- a file that vanished between the event (the listing) and the read ---------------------------------


def test_vanish_between_listing_and_digest(
    duo: Duo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    node = FakeNode()
    w = with_good_zone(duo, node)
    good = w.state[ZONE]
    path = inbox(duo) / ZONE
    path.write_text(zone_text(extra="www IN A 192.0.2.2\n"))
    monkeypatch.setattr(service, "digest_of", vanish_first(digest_of, path))
    with caplog.at_level(logging.WARNING):
        w.reconcile({ZONE})
    assert one_line_records(caplog, logging.WARNING) == [
        f"{path}: no such file (it vanished before it could be read). "
        f"Zone {ZONE} is left as it is until the file's next event."
    ]
    assert node.changes() == []  # not removed (remove_zones is on), not updated
    assert w.state[ZONE] == good
    # The delete event comes next: now the listing has no file, and the zone goes as configured.
    w.reconcile({ZONE})
    assert node.changes() == ["zone-remove"]


def test_vanish_between_digest_and_check(
    duo: Duo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    node = FakeNode()
    path = inbox(duo) / ZONE
    path.write_text(zone_text())
    monkeypatch.setattr(service, "check_file", vanish_first(check_file, path))
    w = watcher(duo, node)
    with caplog.at_level(logging.WARNING):
        w.reconcile(None)
    assert one_line_records(caplog, logging.WARNING) == [
        f"{path}: no such file (it vanished before it could be read). "
        f"Zone {ZONE} is left as it is until the file's next event."
    ]
    assert node.changes() == [] and ZONE not in w.state


# --- entries that are refused ---------------------------------------------------------------------------


def test_symlink_out_of_the_input_dir_refused_unread(
    duo: Duo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(zone_text(extra=f'txt IN TXT "{MARKER}"\n'))
    link = inbox(duo) / ZONE
    link.symlink_to(secret)
    (inbox(duo) / "good.test").write_text(zone_text("good.test"))
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    node = FakeNode()
    w = watcher(duo, node)
    with caplog.at_level(logging.INFO):
        w.reconcile(None)
    message = f"{link}: symbolic link to a file outside the input directory; refused."
    assert one_line_records(caplog, logging.ERROR) == [message]
    assert str(secret) not in opened
    assert list(node.zones) == ["good.test"]  # the good file beside it still goes in
    saved = load_state(w.state_file)
    assert saved[ZONE] == ZoneFileState("", "error", message, str(link))
    assert MARKER not in caplog.text and MARKER not in w.state_file.read_text()


def test_symlink_inside_the_input_dir_is_followed(duo: Duo) -> None:
    real = inbox(duo) / "src" / "example.db"
    real.parent.mkdir()
    real.write_text(zone_text())
    (inbox(duo) / ZONE).symlink_to(Path("src") / "example.db")
    node = FakeNode()
    watcher(duo, node).reconcile(None)
    assert list(node.zones) == [ZONE]


def test_a_good_zone_replaced_by_a_bad_link_keeps_its_data(duo: Duo, tmp_path: Path) -> None:
    node = FakeNode()
    w = with_good_zone(duo, node)
    path = inbox(duo) / ZONE
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    w.reconcile({ZONE})
    assert node.changes() == []  # not removed, although remove_zones is on
    assert w.state[ZONE].status == "error" and "outside the input directory" in w.state[ZONE].message


def test_folder_named_like_a_zone_is_left_alone(duo: Duo, caplog: pytest.LogCaptureFixture) -> None:
    (inbox(duo) / "inc").mkdir()  # "inc" is a valid zone name; a folder of includes
    node = FakeNode()
    w = watcher(duo, node)
    with caplog.at_level(logging.WARNING):
        w.reconcile(None)
    assert caplog.records == [] and w.state == {} and node.changes() == []


def test_fifo_named_like_a_zone_is_refused_without_hanging(
    duo: Duo, caplog: pytest.LogCaptureFixture
) -> None:
    fifo = inbox(duo) / ZONE
    os.mkfifo(fifo)
    w = watcher(duo, FakeNode())
    with caplog.at_level(logging.ERROR):
        w.reconcile(None)
    assert one_line_records(caplog, logging.ERROR) == [f"{fifo}: not a regular file."]


def test_permission_denied_is_reported(
    duo: Duo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = inbox(duo) / ZONE
    path.write_text(zone_text())
    real_open = os.open

    def denied(target: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(target) == str(path):
            raise PermissionError(13, "Permission denied", str(target))
        return real_open(target, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    node = FakeNode()
    w = watcher(duo, node)
    with caplog.at_level(logging.ERROR):
        w.reconcile(None)
    assert one_line_records(caplog, logging.ERROR) == [f"{path}: cannot read: Permission denied."]
    assert w.state[ZONE].status == "error" and node.changes() == []


def test_too_big_file_is_never_read_and_refused_once(
    duo: Duo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = inbox(duo) / ZONE
    path.write_text(zone_text() + "; padding\n" * 200)
    object.__setattr__(duo.config.input, "max_bytes", 1000)
    reads: list[int] = []
    real_read = os.read

    def spy(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", spy)
    w = watcher(duo, FakeNode())
    with caplog.at_level(logging.ERROR):
        w.reconcile(None)
        w.reconcile({ZONE})  # a repeated event for the same file: not refused (nor logged) again
    assert reads == []
    assert one_line_records(caplog, logging.ERROR) == [
        f"{path}: bigger than the limit of 1000 bytes (zone file with its includes)."
    ]


def test_generate_bomb_is_one_error(duo: Duo, caplog: pytest.LogCaptureFixture) -> None:
    path = inbox(duo) / ZONE
    path.write_text(zone_text(extra="$GENERATE 0-4294967295 h$ IN A 192.0.2.1\n"))
    node = FakeNode()
    w = watcher(duo, node)
    with caplog.at_level(logging.ERROR):
        w.reconcile(None)
    assert one_line_records(caplog, logging.ERROR) == [
        f"{path}:6: $GENERATE 0-4294967295 makes 4294967296 records on top of the 3 before it, "
        "more than the limit of 1000000 (the [input] max_records limit)."
    ]
    assert node.changes() == []


def test_unreadable_input_dir_is_reported_and_survived(duo: Duo, caplog: pytest.LogCaptureFixture) -> None:
    w = watcher(duo, FakeNode())
    inbox(duo).rmdir()
    with caplog.at_level(logging.ERROR):
        w._safely(lambda: w.reconcile(None))
    assert one_line_records(caplog, logging.ERROR) == [f"node a: {inbox(duo)}: No such file or directory"]


# --- the running watcher --------------------------------------------------------------------------------


def test_running_watcher_survives_bad_entries_and_takes_a_good_zone_after(
    duo: Duo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    object.__setattr__(duo.config.watch, "debounce", 0.05)
    node = FakeNode()
    w = watcher(duo, node)
    secret = tmp_path / "shadow"
    secret.write_text(MARKER)
    with caplog.at_level(logging.INFO), running(w, 0.02) as thread:
        time.sleep(0.3)
        (inbox(duo) / "bomb.test").write_text(
            zone_text("bomb.test", "$GENERATE 0-4294967295 h$ IN A 192.0.2.1\n")
        )
        (inbox(duo) / "shadow.test").symlink_to(secret)
        (inbox(duo) / "dir.test").mkdir()
        (inbox(duo) / "gone.test").write_text(zone_text("gone.test"))
        (inbox(duo) / "gone.test").unlink()
        time.sleep(0.3)
        (inbox(duo) / "good.test").write_text(zone_text("good.test"))
        deadline = time.monotonic() + 10
        while "good.test" not in node.zones and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread.is_alive()
    assert list(node.zones) == ["good.test"]
    assert {z: s.status for z, s in w.state.items()} == {
        "bomb.test": "error",
        "good.test": "ok",
        "shadow.test": "error",
    }
    assert MARKER not in caplog.text
    one_line_records(caplog, logging.DEBUG)


def test_production_secondaries_are_left_to_bind_config(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only secondaries ods-duo runs itself (the lab's: a `dir`) are reconfigured by the watcher."""
    synced: list[Duo] = []
    monkeypatch.setattr(service.secondaries, "sync_signed", lambda d, client, settle: synced.append(d))
    node = FakeNode()
    assert duo.secondary_dirs == {}
    watcher(duo, node)._after_new_zone()
    assert synced == [] and node.calls == []
    lab_duo = dataclasses.replace(duo, secondary_dirs={"ns1": duo.config_path.parent / "ns1"})
    watcher(lab_duo, node)._after_new_zone()
    assert synced == [lab_duo]


def test_the_watcher_asks_its_node_to_supervise_and_logs_each_restart_in_one_line(
    duo: Duo, caplog: pytest.LogCaptureFixture
) -> None:
    node = FakeNode()
    node.supervised = [
        P.SuperviseEvent(daemon="signerd", pid=41, seen="last log line: Segmentation fault:",
                         action="started", new_pid=42, restarts=1, retry_in=0.0),
        P.SuperviseEvent(daemon="enforcerd", pid=43, seen="exit status 1", action="waiting", new_pid=None,
                         restarts=3, retry_in=20.0),
    ]  # fmt: skip
    w = watcher(duo, node)
    with caplog.at_level(logging.INFO):
        w.supervise_when_due()
        w.supervise_when_due()  # not due again yet: one call
    assert [(n, op.name) for n, op in node.calls] == [("a", "supervise")]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "node a: ods-signerd (pid 41) died (last log line: Segmentation fault:); started again, pid 42 "
        "(restart 1)",
        "node a: ods-enforcerd (pid 43) died (exit status 1); it keeps dying: started again in 20 s",
    ]


@pytest.mark.parametrize(("takes", "apart"), [(0.5, 10.0), (5.0, 50.0)])
def test_snapshots_keep_their_interval_or_take_at_most_a_tenth_of_the_time(
    duo: Duo, monkeypatch: pytest.MonkeyPatch, takes: float, apart: float
) -> None:
    """The lab's 10 s interval: a quick snapshot keeps it; one of 5 s (1,000 zones) comes every 50 s,
    not back to back."""
    clock = [1000.0]
    starts: list[float] = []

    def take(duo: Duo, client: Any, node: str) -> dict[str, Any]:
        starts.append(clock[0])
        clock[0] += takes
        return {}

    monkeypatch.setattr(service.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(service, "take_snapshot", take)
    w = watcher(duo, FakeNode())
    w.snapshot_interval = 10.0
    while clock[0] < 1200.0:
        w.changed = True
        w.snapshot_when_due()
        clock[0] += 0.2  # the watcher's tick
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps and all(apart <= g < apart + 0.5 for g in gaps), gaps
