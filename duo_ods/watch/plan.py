"""What the watcher should do, decided from facts alone (pure, unit tested).

The watcher acts on complete files only and on real changes only: a file whose
content is what was last handled is left alone, so a restart re-signs nothing
that did not change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plan(
    files: dict[str, list[Path]],
    digests: dict[str, str],
    state: dict[str, ZoneFileState],
    node_zones: set[str],
    zones: set[str],
) -> Plan:
    """For the `zones` that events (or a start-up scan) name: add, update, gone, or nothing.

    files: zone -> its candidate files in the input directory; digests: path -> sha256.
    """
    result = Plan()
    for zone in sorted(zones):
        paths = files.get(zone, [])
        if len(paths) > 1:
            result.conflicts[zone] = paths
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
    or once the oldest has waited `max_wait` (a never-ending stream still makes progress)."""

    def __init__(self, delay: float, max_wait: float) -> None:
        self.delay = delay
        self.max_wait = max_wait
        self._first: dict[str, float] = {}
        self._last = 0.0

    def note(self, path: str, now: float) -> None:
        self._first.setdefault(path, now)
        self._last = now

    def ready(self, now: float) -> list[str]:
        if not self._first:
            return []
        quiet = now - self._last >= self.delay
        overdue = now - min(self._first.values()) >= self.max_wait
        if not (quiet or overdue):
            return []
        paths = sorted(self._first)
        self._first.clear()
        return paths
