"""Events the kernel dropped (inotify queue overflow): the watcher rescans its folder once it is
quiet. The real watcher (watchdog, inotify) on a temporary input directory, with the protocol's fake
as node a; the kernel's drop is played by a handler that loses one file's events, then watchdog's own
warning."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent

from duo_ods.config.resolve import Duo
from duo_ods.watch import service
from duo_ods.watch.overflow import OVERFLOW_QUIET, WATCHDOG_LOGGER, OverflowListener
from tests.unit.watch.test_service import FakeNode, duo, inbox, running, watcher, zone_text

__all__ = ["duo"]  # the fixture


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_zone_whose_events_were_dropped_is_added_after_the_overflow_warning(
    duo: Duo, monkeypatch: pytest.MonkeyPatch
) -> None:
    object.__setattr__(duo.config.watch, "debounce", 0.05)
    original = service._Events.on_any_event

    def lossy(self: service._Events, event: FileSystemEvent) -> None:
        if "lost.test" not in str(event.src_path) + str(getattr(event, "dest_path", "")):
            original(self, event)

    monkeypatch.setattr(service._Events, "on_any_event", lossy)
    node = FakeNode()
    w = watcher(duo, node)
    with running(w, 0.02):
        time.sleep(0.3)
        hidden = inbox(duo) / ".lost.tmp"
        hidden.write_text(zone_text("lost.test"))
        os.replace(hidden, inbox(duo) / "lost.test")
        (inbox(duo) / "seen.test").write_text(zone_text("seen.test"))
        assert _wait_for(lambda: "seen.test" in node.zones, 10)
        time.sleep(0.5)
        assert "lost.test" not in node.zones  # its events were lost: nothing tells the watcher
        logging.getLogger(WATCHDOG_LOGGER).warning("Inotify queue overflowed; filesystem events were lost")
        assert _wait_for(lambda: "lost.test" in node.zones, OVERFLOW_QUIET + 10)
        assert "ns1.lost.test." in node.zones["lost.test"]


def test_the_rescan_waits_until_the_folder_is_quiet(tmp_path: Path) -> None:
    listener = OverflowListener(threading.Event())
    (tmp_path / "busy.test").write_text("being written")
    changed = (tmp_path / "busy.test").stat().st_mtime
    assert not listener.rescan_due(tmp_path, changed + 10)  # no overflow seen: nothing to do
    listener.emit(
        logging.LogRecord(WATCHDOG_LOGGER, logging.WARNING, "", 0, "Inotify queue overflowed", (), None)
    )
    assert listener.wake.is_set()
    assert not listener.rescan_due(tmp_path, changed + OVERFLOW_QUIET / 2)  # a file changed just now
    assert listener.rescan_due(tmp_path, changed + OVERFLOW_QUIET + 2)  # quiet: rescan, once
    assert not listener.rescan_due(tmp_path, changed + OVERFLOW_QUIET + 10)
