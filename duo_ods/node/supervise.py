"""Supervision of a node's ODS daemons: one that died is started again, with back-off.

ods-duo starts ods-signerd and ods-enforcerd itself on lab and `layout = "lab"` nodes (and on
system nodes where systemd does not run); nothing else would start one that died (ODS 2.1.12's
signer was seen to crash, see node/ops.py op_zone_remove). The node's watcher asks its node to
look every few seconds (the `supervise` operation); this module is what the node then does.
Where systemd runs the daemons (duo_ods.node.systemd) restarting is systemd's job (Restart= in
the units' ods-duo drop-in) and nothing happens here.

Not started again: a node stopped on purpose (`ods-duo node stop`, a restore: daemons.stop
records it), a daemon ods-duo never started or stopped itself (no record of it), and a daemon
whose node lock another command holds at that moment (it is starting or stopping them).

Every restart is logged by the watcher (one line: node, daemon, what was seen) and counted in
the node's state/supervise.json; `restart_counts` reads the counts (for a metrics exporter).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from duo_ods import process
from duo_ods.config.resolve import Duo, Node
from duo_ods.errors import DuoError
from duo_ods.node import daemons, systemd
from duo_ods.protocol import ops as P
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)

STABLE_AFTER = 120.0  # a daemon up this long since its restart counts as healthy again
BACKOFF_BASE = 10.0  # the second death in a row waits this long, then twice as long each time
BACKOFF_MAX = 300.0
SEEN_MAX = 200  # characters of the daemon's last log line in a message


@dataclass(frozen=True)
class Health:
    """One daemon's supervision record (state/supervise.json)."""

    restarts: int = 0  # starts by the supervisor, ever (the metric)
    deaths: int = 0  # deaths seen, ever
    in_a_row: int = 0  # deaths without a STABLE_AFTER run in between
    last_start: float | None = None  # when the supervisor last started it
    last_pid: int | None = None  # the pid it started then
    next_try: float = 0.0  # not before this (back-off)
    last_seen: str = ""  # what was seen the last time it was found dead


def backoff(in_a_row: int) -> float:
    """Seconds to wait before starting a daemon that died `in_a_row` times without running
    STABLE_AFTER in between: at once the first time, then 10, 20, 40 ... up to BACKOFF_MAX."""
    if in_a_row <= 1:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_BASE * float(2 ** (in_a_row - 2)))


def seen_dead(h: Health, now: float, pid: int, seen: str) -> Health:
    """Its process `pid` was found dead (once per death: the caller starts it or records a failed
    start). A first death, unless the supervisor started that very pid less than STABLE_AFTER ago
    (one that an operator's `node start` started begins a new run)."""
    stable = h.last_start is None or now - h.last_start >= STABLE_AFTER or pid != h.last_pid
    in_a_row = 1 if stable else h.in_a_row + 1
    return replace(
        h,
        deaths=h.deaths + 1,
        in_a_row=in_a_row,
        next_try=now + backoff(in_a_row),
        last_seen=f"pid {pid} {seen}",
    )


def due(h: Health, now: float) -> bool:
    return now >= h.next_try


def started(h: Health, now: float, pid: int) -> Health:
    return replace(h, restarts=h.restarts + 1, last_start=now, last_pid=pid)


def start_failed(h: Health, now: float, pid: int, error: str) -> Health:
    """A start that failed counts as one more death in a row (the back-off grows). `pid` is the
    one now recorded, so that the next look waits out the back-off instead of counting again."""
    in_a_row = h.in_a_row + 1
    return replace(
        h, in_a_row=in_a_row, next_try=now + backoff(in_a_row), last_seen=f"pid {pid} {error}",
        last_start=now, last_pid=pid,
    )  # fmt: skip


@dataclass(frozen=True)
class Event:
    daemon: str
    pid: int  # the pid that died
    seen: str  # its exit status if known, and its last log line
    action: str  # "started" | "waiting" | "start failed"
    new_pid: int | None
    restarts: int
    retry_in: float  # seconds until the next try (waiting, start failed)
    error: str = ""


# --- state file ----------------------------------------------------------------------------


def state_file(state_dir: Path) -> Path:
    return state_dir / "supervise.json"


def load(state_dir: Path) -> dict[str, Health]:
    """The records; none (a fresh start of the counts) when the file is missing or unreadable."""
    try:
        raw = json.loads(state_file(state_dir).read_text())
        return {daemon: Health(**entry) for daemon, entry in raw.get("daemons", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def save(state_dir: Path, health: dict[str, Health]) -> None:
    data = {"daemons": {d: asdict(h) for d, h in sorted(health.items())}}
    write_atomic(state_file(state_dir), json.dumps(data, indent=1) + "\n")


def restart_counts(state_dir: Path) -> dict[str, int]:
    """How often the supervisor started each daemon of the node (state_dir: the node's state folder),
    e.g. for a metrics exporter: {"signerd": 2, "enforcerd": 0}."""
    health = load(state_dir)
    return {daemon: health.get(daemon, Health()).restarts for daemon in daemons.DAEMONS}


# "[Sun Nov 29 12:36:59 2026] ods-signerd[5] msg    : " before each line of an ODS daemon's log
_LOG_PREFIX = re.compile(r"^\[[^]]*\] ods-\w+\[\d+\] (\w+)\s*:")

# --- looking and acting --------------------------------------------------------------------

Clock = Callable[[], float]


def _what_was_seen(node: Node, record: process.ProcessRecord) -> str:
    """Its exit status when this process started it (an agent that started it reaps it), and the
    last line of its log (ods-signerd writes e.g. "Segmentation fault:" or "[netio] fatal error")."""
    parts = []
    code = process.exit_status(record.pid)
    if code is not None:
        parts.append(f"exit status {code}" if code >= 0 else f"killed by signal {-code}")
    last = _LOG_PREFIX.sub(r"\1:", process.tail(node.paths.log / f"{record.name}.log", lines=1).strip())
    if last:
        parts.append(f"last log line: {last[:SEEN_MAX]}")
    return "; ".join(parts) or "no exit status or log line"


def supervise(node: Node, clock: Clock = time.time) -> list[Event]:
    """Start whatever of the node's daemons died (signer first), unless the node was stopped on
    purpose, systemd runs them, or another command holds the node's daemon lock right now.
    A node whose folders are gone (its disk lost, being restored) is left alone: taking the lock
    would make its state folder again under a restore or a wipe."""
    if systemd.uses_systemd(node) or not node.paths.conf_xml.exists() or not node.paths.state.is_dir():
        return []
    with daemons.held(node, wait=False) as got:
        if not got or daemons.stopped_on_purpose(node) is not None:
            return []
        health = load(node.paths.state)
        events = [e for d in daemons.DAEMONS if (e := _look(node, d, health, clock)) is not None]
        if events:
            save(node.paths.state, health)
        return events


def _look(node: Node, daemon: str, health: dict[str, Health], clock: Clock) -> Event | None:
    record = process.read_record(node.paths.state / f"{daemon}.json")
    if record is None or process.is_alive(record):
        return None  # never started by ods-duo, stopped by it, or running
    h = health.get(daemon, Health())
    now = clock()
    if h.last_seen.startswith(f"pid {record.pid} "):  # seen before: waiting out its back-off
        if not due(h, now):
            return None
        seen = h.last_seen.removeprefix(f"pid {record.pid} ")
    else:
        seen = _what_was_seen(node, record)
        h = seen_dead(h, now, record.pid, seen)
        if not due(h, now):
            health[daemon] = h
            return Event(daemon, record.pid, seen, "waiting", None, h.restarts, h.next_try - now)
    try:
        pids = daemons.start(node, only=(daemon,))
    except DuoError as exc:
        current = process.read_record(node.paths.state / f"{daemon}.json")
        pid = current.pid if current is not None else record.pid
        h = start_failed(h, now, pid, f"start failed: {exc}")
        health[daemon] = h
        return Event(daemon, record.pid, seen, "start failed", None, h.restarts, h.next_try - now, str(exc))
    h = started(h, now, pids[daemon])
    health[daemon] = h
    return Event(daemon, record.pid, seen, "started", pids[daemon], h.restarts, 0.0)


def op_supervise(duo: Duo, node: Node, req: P.Empty) -> P.SuperviseReply:
    events = [P.SuperviseEvent.model_validate(asdict(e)) for e in supervise(node)]
    return P.SuperviseReply(node=node.name, events=events)
