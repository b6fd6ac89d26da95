"""The watcher's numbers for the exporter: its queue length and when it last handled each zone's
file, in a small JSON file beside its state (watch.json holds what it did, not when).

The watcher writes it (WatchStats.tick, from its loop) when something changed and at least every
HEARTBEAT seconds, so a stale file tells that the watcher stopped. Kept free of prometheus_client:
the watcher imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from duo_ods.render.engine import write_atomic

HEARTBEAT = 10.0  # seconds between writes when nothing changed


def stats_path(state_dir: Path) -> Path:
    return state_dir / "watch-stats.json"


@dataclass
class WatchStats:
    """What the file holds: `at` when it was written, `queue` the paths waiting, `events` zone ->
    when the watcher last handled an event on its file (epoch seconds)."""

    at: float = 0.0
    queue: int = 0
    events: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"at": self.at, "queue": self.queue, "events": self.events}, sort_keys=True)


def load_stats(path: Path) -> WatchStats | None:
    """The watcher's last numbers; None when it never wrote any (or the file is unreadable)."""
    try:
        data = json.loads(path.read_text())
        return WatchStats(float(data["at"]), int(data["queue"]),
                          {str(z): float(t) for z, t in data["events"].items()})  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class StatsWriter:
    """Kept by the running watcher; writes the file only when due."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = load_stats(path) or WatchStats()
        self._written = -HEARTBEAT
        self._dirty = True

    def handled(self, zones: Iterable[str], now: float) -> None:
        for zone in zones:
            self.stats.events[zone] = now
            self._dirty = True

    def tick(self, queue: int, now: float) -> None:
        if queue != self.stats.queue:
            self.stats.queue = queue
            self._dirty = True
        if self._dirty or now - self._written >= HEARTBEAT:
            self.stats.at = now
            write_atomic(self.path, self.stats.to_json() + "\n")
            self._written = now
            self._dirty = False
