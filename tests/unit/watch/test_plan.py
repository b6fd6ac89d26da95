from pathlib import Path

from duo_ods.watch.plan import Debouncer, ZoneFileState, plan

A = Path("/in/a.test")
B = Path("/in/b.test.zone")


def test_new_changed_unchanged_and_gone() -> None:
    state = {
        "b.test": ZoneFileState("d-b", "ok"),
        "c.test": ZoneFileState("d-c", "ok"),
        "gone.test": ZoneFileState("d-g", "ok"),
    }
    files = {"a.test": [A], "b.test": [B], "c.test": [Path("/in/c.test")]}
    digests = {str(A): "d-a", str(B): "d-b2", "/in/c.test": "d-c"}
    result = plan(
        files, digests, state, {"b.test", "c.test", "gone.test"}, {"a.test", "b.test", "c.test", "gone.test"}
    )
    assert result.add == {"a.test": A}
    assert result.update == {"b.test": B}  # c.test unchanged: nothing (a restart re-signs nothing)
    assert result.gone == ["gone.test"]


def test_refused_file_is_not_retried_until_it_changes() -> None:
    state = {"a.test": ZoneFileState("d-a", "error", "a.test:3: bad")}
    assert plan({"a.test": [A]}, {str(A): "d-a"}, state, set(), {"a.test"}).add == {}
    assert plan({"a.test": [A]}, {str(A): "d-fixed"}, state, set(), {"a.test"}).add == {"a.test": A}


def test_refused_update_is_retried_once_fixed() -> None:
    state = {"b.test": ZoneFileState("d-bad", "error", "b.test:9: bad")}
    assert plan({"b.test": [B]}, {str(B): "d-bad"}, state, {"b.test"}, {"b.test"}).update == {}
    assert plan({"b.test": [B]}, {str(B): "d-good"}, state, {"b.test"}, {"b.test"}).update == {"b.test": B}


def test_two_files_for_one_zone_is_a_conflict() -> None:
    other = Path("/in/a.test.zone")
    result = plan({"a.test": [A, other]}, {str(A): "x", str(other): "y"}, {}, set(), {"a.test"})
    assert result.conflicts == {"a.test": [A, other]} and not result.add


def test_zone_not_from_a_file_is_not_gone() -> None:
    """A zone added by `zone add` (never seen as a file) is not removed when no file names it."""
    assert plan({}, {}, {}, {"cli.test"}, {"cli.test"}).gone == []


def test_kept_zone_is_reported_once() -> None:
    state = {"k.test": ZoneFileState("", "kept", "file removed; zone kept")}
    assert plan({}, {}, state, {"k.test"}, {"k.test"}).gone == []


def test_debouncer_waits_for_quiet_then_batches() -> None:
    d = Debouncer(delay=0.5, max_wait=5.0)
    d.note("/in/x", 0.0)
    d.note("/in/y", 0.3)
    assert d.ready(0.6) == []  # y is only 0.3 s old
    assert d.ready(0.8) == ["/in/x", "/in/y"]
    assert d.ready(5.0) == []


def test_debouncer_makes_progress_in_an_endless_stream() -> None:
    d = Debouncer(delay=0.5, max_wait=2.0)
    now = 0.0
    batches = []
    while now < 3.0:
        d.note(f"/in/{now:.1f}", now)
        now += 0.1
        if batch := d.ready(now):
            batches.append(batch)
    assert batches and len(batches[0]) >= 19


def test_unreadable_file_is_refused_not_gone() -> None:
    """A file that cannot be read (a link out of the folder, permission denied) is not a removed file:
    the zone is refused and keeps its last good data."""
    state = {"a.test": ZoneFileState("d-a", "ok")}
    result = plan({"a.test": [A]}, {}, state, {"a.test"}, {"a.test"}, problems={str(A): "a.test: refused."})
    assert result.refused == {"a.test": (A, "a.test: refused.")}
    assert (result.add, result.update, result.gone) == ({}, {}, [])
