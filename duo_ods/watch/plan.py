"""What the watcher should do, decided from facts alone (pure, unit tested).

The watcher acts on complete files only and on real changes only: a file whose
content is what was last handled is left alone, so a restart re-signs nothing
that did not change.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from duo_ods.errors import ZoneFileError
from duo_ods.zones.validate import InputVanished, confined_path

Status = Literal["ok", "error", "kept"]


@dataclass
class ZoneFileState:
    """What the watcher last did with a zone's file."""

    digest: str  # sha256 of the file as last handled ("" once the file is gone)
    status: Status
    message: str = ""
    file: str = ""


@dataclass
class Plan:
    add: dict[str, Path] = field(default_factory=dict)
    update: dict[str, Path] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)  # file removed for a zone the node has
    conflicts: dict[str, list[Path]] = field(default_factory=dict)  # "x" and "x.zone" both present
    refused: dict[str, tuple[Path, str]] = field(default_factory=dict)  # file unreadable: one-line reason


_CHUNK = 1024 * 1024


def digest_of(path: Path, input_dir: Path, max_bytes: int) -> str:
    """sha256 of a file in the input directory, to tell a real change from a repeated event.

    Raises ZoneFileError (one line naming the file) for what cannot be a zone file there: a symbolic
    link out of the input directory (its target is never opened), something not a regular file, an
    OSError on open or read; InputVanished when the file is gone. A file over `max_bytes` is not read:
    its "digest" is its size and time, so the zone check refuses it once and not again until it changes.
    """
    target = confined_path(path, input_dir)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise InputVanished(f"{path}: no such file (it vanished before it could be read).") from None
    except OSError as e:
        raise ZoneFileError(f"{path}: cannot read: {e.strerror}.") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ZoneFileError(f"{path}: not a regular file.")
        too_big = f"over {max_bytes} bytes: size {st.st_size}, changed {st.st_mtime_ns}"
        if st.st_size > max_bytes:
            return too_big
        sha = hashlib.sha256()
        left = max_bytes + 1  # one byte past the limit: the file may have grown since fstat()
        while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
            sha.update(chunk)
            left -= len(chunk)
        return too_big if left == 0 else sha.hexdigest()
    except OSError as e:
        raise ZoneFileError(f"{path}: cannot read: {e.strerror}.") from None
    finally:
        os.close(fd)


def plan(
    files: dict[str, list[Path]],
    digests: dict[str, str],
    state: dict[str, ZoneFileState],
    node_zones: set[str],
    zones: set[str],
    *,
    problems: Mapping[str, str] | None = None,
) -> Plan:
    """For the `zones` that events (or a start-up scan) name: add, update, gone, refused or nothing.

    files: zone -> its candidate files in the input directory; digests: path -> sha256; problems:
    path -> why it could not be read (such a zone is refused and keeps its last good data).
    """
    result = Plan()
    problems = problems or {}
    for zone in sorted(zones):
        paths = files.get(zone, [])
        if len(paths) > 1:
            result.conflicts[zone] = paths
            continue
        if paths and str(paths[0]) in problems:
            result.refused[zone] = (paths[0], problems[str(paths[0])])
            continue
        last = state.get(zone)
        if not paths:
            if zone in node_zones and last is not None and last.status != "kept":
                result.gone.append(zone)
            continue
        path = paths[0]
        unchanged = last is not None and last.digest == digests[str(path)]
        if zone not in node_zones:
            if not (unchanged and last is not None and last.status == "error"):
                result.add[zone] = path  # a new zone, or a refused one whose file changed
        elif not unchanged:
            result.update[zone] = path
    return result


class Debouncer:
    """Collects paths from file events and hands them out together once events have been quiet for
    `delay` seconds (an editor's burst of writes, or many files dropped at once, becomes one batch),
    or once the oldest has waited `max_wait` (a never-ending stream still makes progress).

    When every waiting path is known complete (its writer closed it, or it was moved into place or
    deleted) they go out after `settle` seconds of quiet instead of `delay`: such a file is whole
    already, and the short pause still gathers a burst (a thousand files renamed into place arrive
    within microseconds of each other). A path known only from a 'created' event (a writer may not
    have written yet, or a file moved in from another folder) waits the full `delay`, as before."""

    def __init__(self, delay: float, max_wait: float, settle: float | None = None) -> None:
        self.delay = delay
        self.max_wait = max_wait
        self.settle = delay if settle is None else min(settle, delay)
        self._first: dict[str, float] = {}
        self._last = 0.0
        self._writing: set[str] = set()  # written to and not closed since: not complete yet
        self._complete: set[str] = set()  # closed, moved or deleted, and no event since
        self.handed_first: float | None = None  # first event of the batch `ready` last handed out

    def note(self, path: str, now: float) -> None:
        """Any other event for the path (created): due once events are quiet for `delay`."""
        self._last = now
        self._complete.discard(path)
        if path not in self._writing:
            self._first.setdefault(path, now)

    def writing(self, path: str) -> None:
        """A writer wrote to the file and has not closed it: it is not handed out (however long the
        pause, max_wait included) until it is closed, moved or deleted (`closed`). Without this, a
        created file written in parts with a pause longer than the debounce was read half: a file
        cut at a line end can be a valid zone."""
        self._writing.add(path)
        self._complete.discard(path)
        self._first.pop(path, None)

    def pending(self) -> int:
        """Paths waiting to be handed out (or still being written): the watcher's queue length."""
        return len(self._first) + len(self._writing)

    def closed(self, path: str, now: float) -> None:
        """The writer closed the file (or it was moved or deleted): complete, due after `settle`."""
        self._writing.discard(path)
        self.note(path, now)
        self._complete.add(path)

    def _quiet_needed(self) -> float:
        return self.settle if self._complete.issuperset(self._first) else self.delay

    def due_in(self, now: float) -> float | None:
        """Seconds until `ready` hands something out if no other event comes (0: now); None when
        nothing waits. The watcher sleeps this long (at most its tick) instead of polling."""
        if not self._first:
            return None
        quiet_at = self._last + self._quiet_needed()
        overdue_at = min(self._first.values()) + self.max_wait
        return max(0.0, min(quiet_at, overdue_at) - now)

    def ready(self, now: float) -> list[str]:
        if not self._first:
            return []
        quiet = now - self._last >= self._quiet_needed()
        overdue = now - min(self._first.values()) >= self.max_wait
        if not (quiet or overdue):
            return []
        paths = sorted(self._first)
        self.handed_first = min(self._first.values())
        self._first.clear()
        self._complete.difference_update(paths)
        return paths
