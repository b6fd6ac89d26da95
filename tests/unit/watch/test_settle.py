"""A file known complete (closed by its writer, moved into place, deleted) is handed out after the short
`settle` pause instead of the full debounce; anything else still waits the debounce, and a file being
written still waits for its close (issue 14: one changed record to a validated answer in 1 s)."""

from __future__ import annotations

import os
import time

import pytest

from duo_ods.config.resolve import Duo
from duo_ods.watch.plan import Debouncer
from tests.unit.watch.test_service import FakeNode, duo, inbox, running, watcher, zone_text

__all__ = ["duo"]  # the fixture

A, B = "/in/a.test", "/in/b.test"


def test_a_closed_or_moved_file_goes_after_the_settle_pause() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0, settle=0.05)
    d.closed(A, 0.0)  # moved into place (or closed after writing)
    assert d.ready(0.04) == []  # a burst may still be arriving
    assert d.due_in(0.04) == pytest.approx(0.01)
    assert d.ready(0.05) == [A]
    assert d.due_in(0.05) is None


def test_a_file_seen_only_created_waits_the_full_debounce() -> None:
    """A created file may still be empty (its writer has not written yet) or came from another folder:
    not known complete, so the debounce applies, as before."""
    d = Debouncer(delay=0.5, max_wait=5.0, settle=0.05)
    d.note(A, 0.0)
    assert d.ready(0.1) == []
    assert d.due_in(0.1) == pytest.approx(0.4)
    assert d.ready(0.5) == [A]


def test_one_incomplete_file_holds_the_batch_to_the_debounce() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0, settle=0.05)
    d.closed(A, 0.0)
    d.note(B, 0.01)  # created, nothing more known
    assert d.ready(0.2) == []
    assert d.ready(0.51) == [A, B]


def test_a_file_written_to_again_after_its_close_is_not_complete() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0, settle=0.05)
    d.closed(A, 0.0)
    d.writing(A)  # opened and written again: held until it is closed again
    assert d.ready(1.0) == [] and d.ready(10.0) == []
    d.closed(A, 10.0)
    assert d.ready(10.04) == []
    assert d.ready(10.05) == [A]


def test_a_created_file_closed_after_writing_is_complete() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0, settle=0.05)
    d.note(A, 0.0)  # created
    d.writing(A)  # modified
    d.closed(A, 0.2)  # closed: complete
    assert d.ready(0.26) == [A]


def test_a_burst_of_renames_stays_one_batch() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0, settle=0.05)
    now = 0.0
    for i in range(1000):
        d.closed(f"/in/z{i:04}.test", now)
        now += 0.0002  # 1,000 renames in 0.2 s
        assert d.ready(now) == []
    assert len(d.ready(now + 0.05)) == 1000


def test_without_settle_the_debounce_applies_to_every_file() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0)
    d.closed(A, 0.0)
    assert d.ready(0.3) == []
    assert d.ready(0.5) == [A]


def test_settle_is_never_longer_than_the_debounce() -> None:
    d = Debouncer(delay=0.1, max_wait=5.0, settle=2.0)
    d.closed(A, 0.0)
    assert d.ready(0.1) == [A]


def test_the_watcher_acts_on_a_renamed_file_without_waiting_for_the_debounce_or_its_tick(duo: Duo) -> None:
    """The real watcher (watchdog, inotify) with a long debounce and a long tick: a file renamed into
    place is added after the settle pause, long before either (its loop is woken, not polled)."""
    object.__setattr__(duo.config.watch, "debounce", 5.0)
    object.__setattr__(duo.config.watch, "settle", 0.05)
    node = FakeNode()
    w = watcher(duo, node)
    with running(w, 3.0):
        time.sleep(0.5)  # the first reconcile is done, the observer runs
        tmp = inbox(duo) / ".fast.test.tmp"
        tmp.write_text(zone_text("fast.test"))
        renamed = time.monotonic()
        os.replace(tmp, inbox(duo) / "fast.test")
        while "fast.test" not in node.zones and time.monotonic() - renamed < 10:
            time.sleep(0.005)
        took = time.monotonic() - renamed
    assert "fast.test" in node.zones
    assert took < 1.5, f"took {took:.2f} s: the debounce (5 s) or the tick (3 s) was waited for"


def test_the_watcher_still_waits_the_debounce_for_a_file_only_created(duo: Duo) -> None:
    """A file created and held open without a write sends 'created' only: not known complete, it waits
    the debounce (and is then read as it is: empty, so refused once)."""
    object.__setattr__(duo.config.watch, "debounce", 1.0)
    object.__setattr__(duo.config.watch, "settle", 0.05)
    node = FakeNode()
    w = watcher(duo, node)
    with running(w, 0.05):
        time.sleep(0.5)
        with (inbox(duo) / "slow.test").open("w"):
            created = time.monotonic()
            while "slow.test" not in w.state and time.monotonic() - created < 5:
                time.sleep(0.005)
            took = time.monotonic() - created
    assert w.state["slow.test"].status == "error" and "slow.test" not in node.zones
    assert took >= 0.95, f"handled after {took:.2f} s, before the debounce (1 s)"
