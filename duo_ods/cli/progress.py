"""A one-line progress display on stderr for long commands, only on a terminal and never with --json.

The work itself (lab up, backup restore, zone add of many files, batch key create, check of many
zones) lives outside the CLI and knows nothing of displays. What it already does is watched instead:
  - its log records under `duo_ods` (INFO and up): the latest is shown as what happens now, and a
    record that reports finished items ("%d zones added on %s") advances the count (COUNTERS);
  - the node operations it runs through the command's client (ObservedTransport): "node b: OP".
A thread redraws the line every TICK seconds, so a long silent step still shows the time passing.
Nothing is written when the display is off: output to a file or a pipe stays exactly as it was.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from duo_ods.transport.base import Payload, Transport

TICK = 0.25  # seconds between redraws
SPINNER = "|/-\\"
CLEAR = "\r\x1b[K"  # back to the line's start, erase it

# Log messages (the format string, as the library logs it) that report N finished items: N is the
# first argument. Counting from these keeps the library free of display code. Counted only by a
# display that was given a total (zone add, key create): lab up's one key create is not a count.
COUNTERS: Mapping[str, str] = {
    "%d zones added on %s": "zones",
    "keys made for %d zone(s) on %s: %s": "zones",
}


def wanted(stream: TextIO, *, as_json: bool, verbose: bool) -> bool:
    """On a terminal only; not with --json (one document, nothing else) nor -v (the log says it all)."""
    isatty = getattr(stream, "isatty", None)
    return not as_json and not verbose and callable(isatty) and bool(isatty())


def render(label: str, done: int, total: int | None, elapsed: float, note: str, width: int, tick: int) -> str:
    """The line as drawn: 'label  [####----]  3/10  12s  what happens now', cut to the width."""
    if total:
        bar_width = 20
        filled = min(bar_width, bar_width * done // total)
        head = f"{label} [{'#' * filled}{'-' * (bar_width - filled)}] {done}/{total}"
    else:
        head = f"{label} {SPINNER[tick % len(SPINNER)]}" + (f" {done} done" if done else "")
    line = f"{head}  {elapsed:.0f}s"
    if note:
        line += f"  {note}"
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


class Progress:
    """The display: advance() counts finished items, note() says what happens now."""

    def __init__(self, stream: TextIO, label: str, total: int | None = None, width: int = 100) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.width = width
        self.done = 0
        self.note_text = ""
        self.started = time.monotonic()
        self._tick = 0
        self._erased_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        self.draw()
        self._thread.start()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
        self.draw()

    def note(self, text: str) -> None:
        with self._lock:
            self.note_text = text.splitlines()[0] if text else ""
        self.draw()

    def draw(self) -> None:
        with self._lock:
            line = render(
                self.label, self.done, self.total, time.monotonic() - self.started, self.note_text,
                self.width, self._tick,
            )  # fmt: skip
            self.stream.write(CLEAR + line)
            self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            self._tick += 1
            if time.monotonic() - self._erased_at >= TICK:  # a log line being printed: not over it
                self.draw()

    def erase(self) -> None:
        with self._lock:
            self._erased_at = time.monotonic()
            self.stream.write(CLEAR)
            self.stream.flush()

    def close(self) -> None:
        """Stop redrawing and erase the line: the command's own output follows on a clean line."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.erase()


class _LogWatcher(logging.Handler):
    def __init__(self, progress: Progress, printed_from: int) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.printed_from = printed_from

    def emit(self, record: logging.LogRecord) -> None:
        try:
            args = record.args
            counted = record.msg in COUNTERS and self.progress.total is not None  # not lab up's one key
            if counted and isinstance(args, tuple) and args and isinstance(args[0], int):
                self.progress.advance(args[0])
            if record.levelno >= self.printed_from:
                # The terminal's log handler prints this one next (this handler runs first): it
                # starts on an erased line, and the next tick draws the display below it.
                self.progress.erase()
            else:
                self.progress.note(record.getMessage())
        except Exception:  # a display must never break the command
            self.handleError(record)


@contextmanager
def _log_to(progress: Progress) -> Iterator[None]:
    """INFO records of duo_ods reach the display but not the terminal's log handler (which, without
    -v, shows warnings only): the display would be drawn over by them."""
    logger = logging.getLogger("duo_ods")
    root = logging.getLogger()
    shown_from = root.getEffectiveLevel()
    quiet = [h for h in root.handlers if h.level < shown_from]
    before_level = logger.level
    for handler in quiet:
        handler.setLevel(shown_from)
    watcher = _LogWatcher(progress, shown_from)
    logger.addHandler(watcher)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(before_level)
        for handler in quiet:
            handler.setLevel(logging.NOTSET)


class NoProgress:
    """What a command gets when the display is off: the same calls, nothing written."""

    def advance(self, count: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@contextmanager
def shown(
    label: str, *, enabled: bool, total: int | None = None, stream: TextIO | None = None
) -> Iterator[Progress | NoProgress]:
    """The display for the duration of the block, or nothing at all when not `enabled`."""
    if not enabled:
        yield NoProgress()
        return
    out = stream if stream is not None else sys.stderr
    width = _terminal_width(out)
    progress = Progress(out, label, total, width)
    progress.start()
    try:
        with _log_to(progress):
            yield progress
    finally:
        progress.close()


def _terminal_width(stream: TextIO) -> int:
    import os  # noqa: PLC0415 (only when a display is drawn)

    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return max(20, columns - 1) if columns else 79  # a terminal that says 0 columns: assume 80


class ObservedTransport:
    """The command's transport, telling the display which node operation runs now."""

    def __init__(self, inner: Transport, note: Callable[[str], None]) -> None:
        self.inner = inner
        self.on_call = note

    def call(
        self, node: str, op: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Payload:
        self.on_call(f"node {node}: {op}")
        return self.inner.call(node, op, payload, timeout)

    def close(self) -> None:
        self.inner.close()
