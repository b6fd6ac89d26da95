"""File events the kernel dropped: the watcher rescans its folder.

When more file events come than the kernel's inotify queue holds (fs.inotify.max_queued_events,
16384 by default: thousands of zone files dropped at once), the kernel drops the rest and says so
once. watchdog 7.1 only logs that for a non-recursive watch, so the zones whose events were lost
waited for the watcher's next start (seen with 10,000 files: hundreds of zones never added). The
watcher therefore listens for watchdog's warning and then, once no file in the folder has changed
for OVERFLOW_QUIET seconds (a file still being written must not be read half), compares every file
with what it knows. Remove the log listener when watchdog hands the overflow to the event handler.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

WATCHDOG_LOGGER = "watchdog.observers.inotify_c"  # where watchdog 7.1 says "Inotify queue overflowed"
OVERFLOW_QUIET = 2.0  # seconds without a change in the folder before the rescan reads its files
CHECK_EVERY = 1.0  # seconds between looks at the folder while a rescan waits for quiet


class OverflowListener(logging.Handler):
    """Set when watchdog reports that the kernel dropped events; wakes the watcher's loop."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.wake = wake
        self.next_check = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.seen.set()
            self.wake.set()

    def start(self) -> None:
        logger = logging.getLogger(WATCHDOG_LOGGER)
        logger.addHandler(self)
        if logger.getEffectiveLevel() > logging.WARNING:  # the warning must reach this handler
            logger.setLevel(logging.WARNING)

    def stop(self) -> None:
        logging.getLogger(WATCHDOG_LOGGER).removeHandler(self)

    def rescan_due(self, folder: Path, now: float | None = None) -> bool:
        """True once after an overflow, when the folder has been quiet long enough to read it whole."""
        if not self.seen.is_set():
            return False
        now = time.time() if now is None else now
        if now < self.next_check:
            return False
        self.next_check = now + CHECK_EVERY
        if now - newest_change(folder) < OVERFLOW_QUIET:
            return False
        self.seen.clear()
        return True


def newest_change(folder: Path) -> float:
    """The newest modification time of the folder's entries (0 for an empty or unreadable folder)."""
    newest = 0.0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue  # gone meanwhile
    except OSError:
        return 0.0
    return newest
