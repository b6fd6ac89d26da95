"""The watcher of one node: file events in, zone add / update / removal on that node out.

Each node runs its own watcher on its own input directory and acts on its own
node only; the key_origin node's watcher also makes keys for new zones once
every node has them, so two watchers never race to make keys. A bad file is
reported (log and `zone list`) and changes nothing: the last good data stays.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from duo_ods.backup.snapshot import take_snapshot
from duo_ods.config.resolve import Duo, Node
from duo_ods.errors import DuoError, ZoneFileError
from duo_ods.keys.autoroll import Scheduler
from duo_ods.keys.flow import KEY_BATCH, create_keys, resume_pending
from duo_ods.keys.journal import pending
from duo_ods.keys.reuse import remember_keys
from duo_ods.lab import secondaries
from duo_ods.metrics.watchfile import StatsWriter, stats_path
from duo_ods.pacing import next_due
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.relay.control import RelayTicker
from duo_ods.watch.overflow import OverflowListener
from duo_ods.watch.plan import Debouncer, Plan, Status, ZoneFileState, digest_of, plan
from duo_ods.watch.state import load_state, save_state, state_path
from duo_ods.zones.catchup import catch_up
from duo_ods.zones.inputs import record_inputs
from duo_ods.zones.level import level_zone
from duo_ods.zones.manage import check_file, node_zones, update_checked
from duo_ods.zones.returning import above_old_copies, remember_serial
from duo_ods.zones.validate import CheckedZone, InputVanished, zone_name_from_filename

log = logging.getLogger(__name__)

RESUME_INTERVAL = 30.0  # seconds between looks for a key command a kill or a silent node left unfinished
SUPERVISE_INTERVAL = 2.0  # seconds between looks at the node's daemons (one that died is started again)


class _Events(FileSystemEventHandler):
    """Only complete files count. A file written to (modified) is held until its writer closes it;
    one closed after writing, moved into place (a move from another folder arrives as 'created') or
    deleted is due once events are quiet. A created file whose writer pauses before its first write
    may be read empty: refused once, and the last good data stays meanwhile."""

    def __init__(
        self, debouncer: Debouncer, lock: threading.Lock, wake: threading.Event | None = None
    ) -> None:
        self.debouncer = debouncer
        self.lock = lock
        self.wake = wake or threading.Event()  # the watcher's loop sleeps on it until the batch is due

    def on_any_event(self, event: FileSystemEvent) -> None:
        kinds = FileClosedEvent | FileMovedEvent | FileDeletedEvent | FileCreatedEvent | FileModifiedEvent
        if event.is_directory or not isinstance(event, kinds):
            return
        paths = [event.src_path, event.dest_path] if isinstance(event, FileMovedEvent) else [event.src_path]
        now = time.monotonic()
        with self.lock:
            for path in paths:
                if not zone_name_from_filename(Path(str(path)).name):
                    continue
                if isinstance(event, FileModifiedEvent):
                    self.debouncer.writing(str(path))
                elif isinstance(event, FileCreatedEvent):
                    self.debouncer.note(str(path), now)
                else:  # closed, moved (both ends), deleted: no writer holds it any more
                    self.debouncer.closed(str(path), now)
        self.wake.set()


class Watcher:
    def __init__(self, duo: Duo, node: Node, client: NodeClient) -> None:
        self.duo = duo
        self.node = node
        self.client = client
        self.config = duo.config.watch
        self.state_file = state_path(node.paths.state)
        self.state = load_state(self.state_file)
        self.pending_keys: set[str] = set()
        self.node_inputs: dict[str, str | None] = {}  # zone -> sha256 of the node's current input
        origin = (duo.config.key_origin or next(iter(duo.nodes))) == node.name
        self.is_key_origin = self.config.create_keys and origin
        # One watcher (the key origin's) levels serials, so two never re-sign the same zone at once.
        self.level_interval = duo.config.serials.level_interval if origin else 0.0
        self.next_level = time.monotonic() + self.level_interval
        self.next_resume = time.monotonic()
        self.next_supervise = time.monotonic()
        # ...and snapshots for the backup store after changes (zones, keys), at most this often
        # (and at most a tenth of the time: duo_ods.pacing).
        self.snapshot_interval = duo.config.backup.snapshot_interval if origin else 0.0
        self.next_snapshot: float | None = None
        self.changed = False
        self.batch_event_at: float | None = None  # monotonic time of the first event of the batch in hand
        self.relay = RelayTicker(client, node.name)  # its relay and catalog follow what it signs
        # The key origin's watcher rolls keys on the policy's lifetimes and confirms DS at the parent.
        self.scheduler = Scheduler(duo, client, enabled=origin)

    # --- looking at the input directory ------------------------------------------------------

    def _files(self) -> dict[str, list[Path]]:
        """Zone files by zone. Folders are left out (they may hold $INCLUDE files); symbolic links,
        FIFOs and the like are in, so that reading them is refused and reported."""
        files: dict[str, list[Path]] = {}
        for path in sorted(self.node.input_dir.iterdir()):
            zone = zone_name_from_filename(path.name)
            if zone and not _is_folder(path):
                files.setdefault(zone, []).append(path)
        return files

    def _digests(
        self, files: dict[str, list[Path]], wanted: set[str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Digests of the wanted zones' files, and a one-line problem for each file that cannot be read.

        A zone whose file vanished since the listing drops out of `wanted` for this round: its delete
        (or move) event comes after and decides then, from a listing without it.
        """
        digests: dict[str, str] = {}
        problems: dict[str, str] = {}
        for zone in sorted(wanted):
            for path in files.get(zone, []):
                try:
                    digests[str(path)] = digest_of(path, self.node.input_dir, self.duo.config.input.max_bytes)
                except InputVanished as exc:
                    self._vanished(zone, exc)
                    wanted.discard(zone)
                except ZoneFileError as exc:
                    problems[str(path)] = str(exc)
        return digests, problems

    def _vanished(self, zone: str, exc: InputVanished) -> None:
        log.warning("%s Zone %s is left as it is until the file's next event.", exc, zone)

    def reconcile(self, zones: Iterable[str] | None = None) -> Plan:
        """Bring the node in line with the files for `zones` (None: every file and every known zone)."""
        files = self._files()
        wanted = set(zones) if zones is not None else set(files) | set(self.state)
        digests, problems = self._digests(files, wanted)
        listed = self.client.call(self.node.name, P.ZONE_LIST).zones
        have = {z.name for z in listed}
        self.node_inputs = {z.name: z.input_digest for z in listed}
        todo = plan(files, digests, self.state, have, wanted, problems=problems)
        for zone, (path, message) in todo.refused.items():
            self._record(zone, "error", "", message, path)  # the last good data stays
        for zone, paths in todo.conflicts.items():
            self._record(
                zone, "error", "", f"two files for one zone: {', '.join(p.name for p in paths)}", paths[0]
            )
        self._add(todo.add, digests)
        for zone, path in todo.update.items():
            self._update(zone, path, digests[str(path)])
        for zone in todo.gone:
            self._gone(zone)
        save_state(self.state_file, self.state)
        return todo

    # --- acting ------------------------------------------------------------------------------

    def _record(self, zone: str, status: Status, digest: str, message: str, path: Path | None) -> None:
        self.state[zone] = ZoneFileState(digest, status, message, str(path) if path else "")
        if status == "error":
            log.error("%s", message)

    def _checked(self, zone: str, path: Path, digest: str) -> CheckedZone | None:
        try:
            return check_file(self.duo, zone, path, input_dir=self.node.input_dir)
        except InputVanished as exc:
            self._vanished(zone, exc)
            return None
        except ZoneFileError as exc:
            self._record(zone, "error", digest, str(exc), path)  # the last good data stays
            return None

    def _add(self, new: dict[str, Path], digests: dict[str, str]) -> None:
        batch = [
            (z, p, above_old_copies(self.duo, c))  # a returning zone: above its old copies' serial
            for z, p in new.items()
            if (c := self._checked(z, p, digests[str(p)])) is not None
        ]
        for start in range(0, len(batch), self.config.batch_size):
            chunk = batch[start : start + self.config.batch_size]
            request = P.ZoneBatchRequest(zones=[P.ZoneInput(zone=z, text=c.text) for z, _p, c in chunk])
            record_inputs(self.duo, [c for _z, _p, c in chunk])  # the newest input, before any node has it
            try:
                self.client.call(self.node.name, P.ZONE_ADD_BATCH, request)
            except DuoError as exc:
                for zone, path, _c in chunk:
                    self._record(zone, "error", digests[str(path)], f"{path}: not added: {exc}", path)
                continue
            for zone, path, checked in chunk:
                self._record(zone, "ok", digests[str(path)], f"added (serial {checked.serial})", path)
                log.info("zone %s added from %s", zone, path)
                self.changed = True
                if self.is_key_origin:
                    self.pending_keys.add(zone)

    def _update(self, zone: str, path: Path, digest: str) -> None:
        started = time.monotonic()
        checked = self._checked(zone, path, digest)
        if checked is None:
            return
        check_s = time.monotonic() - started
        if self.node_inputs.get(zone) == hashlib.sha256(checked.text.encode()).hexdigest():
            # First sight of a file whose data the node already signs (zone add, or a lost state file).
            self._record(zone, "ok", digest, "unchanged", path)
            return
        try:
            result = update_checked(self.duo, self.client, checked, [self.node.name])
        except DuoError as exc:
            self._record(zone, "error", digest, f"{path}: not updated: {exc}", path)
            return
        self._record(zone, "ok", digest, f"updated (output serial {result['output_serial']})", path)
        log.info("zone %s updated from %s (%s)", zone, path, self._timing(started, check_s, result))
        self.changed = True

    def _timing(self, started: float, check_s: float, result: dict[str, Any]) -> str:
        """Where an update's time went, in one line: since the file's first event, the wait before its
        check (debounce, zone list), the input check, then update_checked's steps (zones.manage:
        serials, nodes, served, notify)."""
        now = time.monotonic()
        parts = [f"{now - started:.2f} s"]
        if self.batch_event_at is not None:
            parts = [
                f"{now - self.batch_event_at:.2f} s after the file event",
                f"wait {started - self.batch_event_at:.2f}",
            ]
        parts.append(f"check {check_s:.2f}")
        parts += [f"{step} {s:.2f}" for step, s in result.get("seconds", {}).items()]
        return ", ".join(parts)

    def _gone(self, zone: str) -> None:
        if not self.config.remove_zones:
            self._record(zone, "kept", "", "file removed; zone kept (watch.remove_zones is off)", None)
            log.warning("zone %s: its file was removed; the zone is kept (watch.remove_zones is off)", zone)
            return
        remember_keys(self.duo, self.client, zone, [self.node.name])  # for its return (keys/reuse.py)
        remember_serial(self.duo, zone)  # and its serial, which a return must exceed (zones/returning.py)
        self.client.call(self.node.name, P.ZONE_REMOVE, P.ZoneRequest(zone=zone))
        self.state.pop(zone, None)
        log.info("zone %s removed: its file was removed", zone)
        self.changed = True

    def make_pending_keys(self) -> None:
        """Key origin only: keys for new zones once every node has them (the peers' watchers add them),
        one batch (KEY_BATCH zones, one journalled key create) per tick: a batch takes seconds, and
        file events and SIGTERM must not wait for a thousand zones."""
        if not self.pending_keys:
            return
        try:
            everywhere = set.intersection(*(set(z) for z in node_zones(self.duo, self.client).values()))
        except DuoError as exc:
            log.warning("waiting for every node to answer before making keys: %s", exc)
            return
        ready = sorted(self.pending_keys & everywhere)[:KEY_BATCH]
        if not ready:
            return
        try:
            outcomes = create_keys(self.duo, self.client, ready, None, self.node.name, batch=KEY_BATCH)
        except DuoError as exc:
            log.error("no keys yet for %s: %s (will retry)", ", ".join(ready), exc)
            return
        done = False
        for outcome in outcomes:
            if outcome.ok:
                log.info("zone %s: keys made and shared", outcome.zone)
                self.changed = True
            elif not outcome.has_keys:  # it had keys already: nothing to do for it
                log.error("zone %s: no keys yet: %s (will retry)", outcome.zone, outcome.error)
                continue
            self.pending_keys.discard(outcome.zone)
            done = True
        if done:
            self._after_new_zone()

    def resume_keys_when_due(self) -> None:
        """Key origin only, every RESUME_INTERVAL: finish (or undo) a key command that was killed or
        that stopped at a node that did not answer, once every node answers again."""
        if not self.is_key_origin or time.monotonic() < self.next_resume:
            return
        self.next_resume = time.monotonic() + RESUME_INTERVAL
        if pending(self.duo) is not None:
            finished = resume_pending(self.duo, self.client)
            if finished is not None:
                log.warning("%s", finished.message)
                self.changed = True

    def supervise_when_due(self) -> None:
        """Every SUPERVISE_INTERVAL: the node starts again a daemon of its own that died (not one
        stopped on purpose; with back-off; systemd's job where systemd runs them). One line each:
        node, daemon, what was seen (duo_ods.node.supervise)."""
        if not self.config.supervise or time.monotonic() < self.next_supervise:
            return
        self.next_supervise = time.monotonic() + SUPERVISE_INTERVAL
        for e in self.client.call(self.node.name, P.SUPERVISE).events:
            died = f"node {self.node.name}: ods-{e.daemon} (pid {e.pid}) died ({e.seen})"
            if e.action == "started":
                log.warning("%s; started again, pid %s (restart %d)", died, e.new_pid, e.restarts)
            elif e.action == "waiting":
                log.error("%s; it keeps dying: started again in %.0f s", died, e.retry_in)
            else:
                log.error("%s; could not start it: %s (next try in %.0f s)", died, e.error, e.retry_in)

    def level_serials_when_due(self) -> None:
        """Every [serials] level_interval (key origin): a node that missed an update (stopped, or
        restarted outside ods-duo) gets the newest input above every stale copy (zones.catchup),
        then a node whose serial lags too far is brought up (zones.level)."""
        if not self.level_interval or time.monotonic() < self.next_level:
            return
        self.next_level = time.monotonic() + self.level_interval
        report = catch_up(self.duo, self.client)
        for where, problem in report.failed.items():
            log.warning("catch-up of %s: %s", where, problem)
        for zone in sorted(self.state):
            level_zone(self.duo, self.client, zone)

    def roll_keys_when_due(self) -> None:
        """Key origin only (duo_ods.keys.autoroll): rollovers on lifetimes, the DS at the parent."""
        self.changed |= self.scheduler.tick()

    def snapshot_when_due(self) -> None:
        """A backup snapshot once something changed, at most every [backup] snapshot_interval, and
        further apart when a snapshot takes more than a tenth of that (thousands of zones)."""
        started = time.monotonic()
        if not (self.snapshot_interval and self.changed):
            return
        if self.next_snapshot is not None and started < self.next_snapshot:
            return
        try:
            take_snapshot(self.duo, self.client, self.node.name)
        finally:  # a failed one waits its turn too, rather than being tried again on every tick
            self.next_snapshot = next_due(started, time.monotonic() - started, self.snapshot_interval)
        self.changed = False

    def _after_new_zone(self) -> None:
        """Secondaries that ods-duo runs itself (the lab: a secondary with `dir`) learn the new zone.
        Production secondaries are not touched here: they get `ods-duo bind-config`."""
        if self.duo.secondary_dirs:
            secondaries.sync_signed(self.duo, self.client, settle=0)  # the relay ticks finish it

    # --- running -----------------------------------------------------------------------------

    def run(self, stop: threading.Event, tick: float = 0.2) -> None:
        """File events are acted on as soon as the debouncer hands them out (the loop sleeps until
        then, or until an event wakes it); the rest (supervision, keys, serials, rollovers, snapshots,
        the relay) runs every `tick`. Polling the debouncer on the tick alone cost up to a tick's wait
        on every change."""
        self.node.input_dir.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        wake = threading.Event()
        debouncer = Debouncer(self.config.debounce, self.config.max_wait, self.config.settle)
        observer = Observer()
        observer.schedule(_Events(debouncer, lock, wake), str(self.node.input_dir), recursive=False)
        observer.start()
        stats = StatsWriter(stats_path(self.node.paths.state))  # for the metrics exporter
        overflow = OverflowListener(wake)  # events the kernel dropped: watch/overflow.py
        overflow.start()
        try:
            log.info("watching %s for node %s", self.node.input_dir, self.node.name)
            self._safely(lambda: self.reconcile(None))  # what changed while nobody watched
            next_tick = time.monotonic() + tick
            while not stop.is_set():
                with lock:
                    due = debouncer.due_in(time.monotonic())
                wait = next_tick - time.monotonic()
                if due is not None:
                    wait = min(wait, due)
                if wait > 0:
                    wake.wait(wait)
                wake.clear()
                if stop.is_set():
                    break
                with lock:
                    ready = debouncer.ready(time.monotonic())
                    queue = debouncer.pending()
                if ready:
                    zones = {z for p in ready if (z := zone_name_from_filename(Path(p).name))}
                    self.batch_event_at = debouncer.handed_first
                    self._safely(partial(self.reconcile, zones))
                    self.batch_event_at = None
                    stats.handled(zones, time.time())
                if time.monotonic() < next_tick:
                    continue
                next_tick = time.monotonic() + tick
                self._safely(partial(stats.tick, queue, time.time()))
                self._tick(overflow)
        finally:
            overflow.stop()
            observer.stop()
            observer.join(timeout=10)
            self._safely(partial(save_state, self.state_file, self.state))
            log.info("watcher for node %s stopped", self.node.name)

    def _tick(self, overflow: OverflowListener) -> None:
        """What runs every tick, after the file events (they wait for nothing)."""
        self._safely(partial(self._rescan_if_events_lost, overflow))
        self._safely(self.supervise_when_due)
        self._safely(self.resume_keys_when_due)
        self._safely(self.make_pending_keys)
        self._safely(self.level_serials_when_due)
        self._safely(self.roll_keys_when_due)
        self._safely(self.snapshot_when_due)
        self._safely(self.relay.tick)

    def _rescan_if_events_lost(self, overflow: OverflowListener) -> None:
        if overflow.rescan_due(self.node.input_dir):
            log.warning(
                "the kernel dropped file events (inotify queue full): rescanning %s", self.node.input_dir
            )
            self.reconcile(None)

    def _safely(self, action: Callable[[], object]) -> None:
        """Errors while running are reported, and the watcher carries on (a node may be down a while,
        the input directory may be unreadable for a while, the disk full)."""
        try:
            action()
        except DuoError as exc:
            log.error("node %s: %s", self.node.name, exc)
        except OSError as exc:
            log.error("node %s: %s", self.node.name, _os_error_text(exc))


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False  # gone or unreadable: reading it says which, in one line


def _os_error_text(exc: OSError) -> str:
    """One line: the file and what went wrong ("[Errno 2] ..." and a traceback tell an operator less)."""
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {what}" if exc.filename is not None else what
