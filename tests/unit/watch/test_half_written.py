"""Only complete files count, also with a short debounce: a file a writer still holds open (written
in two parts with a pause longer than the debounce) is never added half. The real watcher (watchdog,
inotify) on a temporary input directory, with the protocol's fake as node a."""

from __future__ import annotations

import time

from duo_ods.config.resolve import Duo
from duo_ods.watch.plan import Debouncer
from tests.unit.watch.test_service import FakeNode, duo, inbox, running, watcher, zone_text

__all__ = ["duo"]  # the fixture

DEBOUNCE = 0.05


def test_a_file_written_in_two_parts_is_added_only_once_complete(duo: Duo) -> None:
    object.__setattr__(duo.config.watch, "debounce", DEBOUNCE)
    node = FakeNode()
    w = watcher(duo, node)
    # The first part alone is a complete, valid zone: only its being open for writing tells.
    first = zone_text("half.test")
    rest = "www IN A 192.0.2.80\n"
    seen: list[str] = []
    with running(w, 0.02):
        time.sleep(0.3)
        with (inbox(duo) / "half.test").open("w") as writer:
            writer.write(first)
            writer.flush()
            time.sleep(20 * DEBOUNCE)  # far longer than the debounce, the file still open
            seen.append(node.zones.get("half.test", ""))
            writer.write(rest)
        deadline = time.monotonic() + 10
        while "half.test" not in node.zones and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen == [""], "the half-written file was added"
    assert "www.half.test." in node.zones["half.test"]  # the complete file, once closed
    assert [op.name for _, op in node.calls].count("zone-add-batch") == 1


def test_the_debouncer_holds_a_file_being_written_until_it_is_closed() -> None:
    d = Debouncer(0.05, 1.0)
    d.note("/in/a.test", 0.0)  # created
    d.writing("/in/a.test")  # modified, not closed
    d.note("/in/b.test", 0.0)
    assert d.ready(5.0) == ["/in/b.test"]  # past max_wait too: a file being written is not due
    assert d.ready(10.0) == []
    d.closed("/in/a.test", 10.0)
    assert d.ready(10.01) == []  # debounced like any event
    assert d.ready(10.1) == ["/in/a.test"]
