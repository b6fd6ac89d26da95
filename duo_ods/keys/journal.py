"""One lock for key-changing work, and a journal that lets the next command finish or undo a killed one.

Every command that changes keys (key create, key rollover, the watcher's key creation,
kek init, restore) runs under one lock per duo, an flock on a file beside the backup store:
two `key create` runs for one zone cannot both make keys, and the watcher cannot race the CLI.

Under the lock, the journal (beside the lock) is written BEFORE each step, so a run killed at
any point (SIGKILL included) leaves a record of everything it may have made:
  - until its commit point, a run only makes things that can be taken back (a key in an HSM,
    a bundle in the backup, a key in a spare-key pool); each is journalled before the node is
    asked to make it, with a locator the controller chose, so even a lost reply is undone;
  - from the commit point on (the first `key import`), the run only moves forward: the keys are
    in every HSM and the backup, and importing them again is idempotent.
The next key command (or `ods-duo key resume`) reads the journal first and undoes (before the
commit point) or finishes (after it) what was left, and says which.

`kek init` (with or without --replace) commits before it asks the backup to make the new KEK
(until then it changed nothing, so undoing it is dropping its record); from there it is finished
forward: every node that lacks the new KEK gets it (duo_ods.keys.kek.finish_kek), and every SO pin
it recorded before asking for it is taken back.

`backup restore` has no commit point: it only builds a node that was wiped (its preflight saw no
daemon and no enforcer database before the first record), and every step of the build is
idempotent, so a killed restore is finished forward by running its steps again from its source
(duo_ods.backup.restore.finish_restore); the journal names the node, so recovery may stop and
rebuild that node, which a fresh restore refuses.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from duo_ods import faults
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)

LOCK_WAIT = 300.0  # seconds a key command waits for another to finish (one takes seconds)

UndoKind = Literal["hsm", "bundle", "pool"]


class KeyLockError(DuoError):
    """Another key command holds the duo's key lock for too long."""


@dataclass(frozen=True)
class Made:
    """Something a run may have made before its commit point, recorded before it was asked for."""

    kind: UndoKind
    target: str  # node name, or "backup"
    locator: str


@dataclass
class Journal:
    """What one key command did so far; it lives in the file only while the command runs."""

    command: str  # "key create", "key rollover", "backup restore", "kek init"
    zone: str  # "" for a restore (details["node"] names the node)
    started: float
    made: list[Made] = field(default_factory=list)
    committed: bool = False  # past the commit point: finish, never undo
    details: dict[str, Any] = field(default_factory=dict)  # what finishing needs (roles, inception...)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Journal:
        data = json.loads(text)
        made = [Made(**m) for m in data.pop("made")]
        return Journal(made=made, **data)


def state_dir(duo: Duo) -> Path:
    path = duo.backup_dir / "state"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class Recorder:
    """The open journal of the running command: each record is on disk before the step it covers."""

    def __init__(self, path: Path, journal: Journal) -> None:
        self.path = path
        self.journal = journal
        self._save()

    def _save(self) -> None:
        write_atomic(self.path, self.journal.to_json() + "\n", mode=0o600)
        faults.point("journal")

    def will_make(self, kind: UndoKind, target: str, locator: str) -> None:
        self.journal.made.append(Made(kind, target, locator))
        self._save()

    def will_make_all(self, made: list[Made]) -> None:
        """Everything one batched step may make, in one record (one fsync for the whole batch)."""
        self.journal.made.extend(made)
        self._save()

    def commit(self, **details: Any) -> None:
        """From here on the command is finished forward, never undone."""
        self.journal.committed = True
        self.journal.details.update(details)
        self._save()

    def note(self, **details: Any) -> None:
        self.journal.details.update(details)
        self._save()

    def remember(self, key: str, value: str) -> None:
        """Add `value` to the list `details[key]`, on disk before the step it covers (e.g. a pin the
        backup's SO is about to make, for the next command to take back if this run is killed)."""
        self.journal.details.setdefault(key, []).append(value)
        self._save()

    def step(self, name: str) -> None:
        """A forward-only command (backup restore) is about to run step `name`: on disk first."""
        self.journal.details.setdefault("steps", []).append(name)
        self._save()

    def close(self) -> None:
        """The command ended (done, or undone): nothing is left to finish."""
        self.path.unlink(missing_ok=True)


def journal_path(duo: Duo) -> Path:
    return state_dir(duo) / "keys.journal"


def parked_path(duo: Duo) -> Path:
    return state_dir(duo) / "keys.journal.parked"


def park(duo: Duo) -> None:
    """Set a key command's unfinished journal aside while `backup restore` rebuilds a lost node.

    That command needs every node and cannot finish while a node is lost, and the restore keeps
    its own journal in the one journal file: without this, the restore the lost node needs would
    be refused until the key command finished, which needs that node (duo_ods.backup.restore).
    Only under the key lock."""
    os.replace(journal_path(duo), parked_path(duo))


def unpark(duo: Duo) -> bool:
    """Put a parked journal back once no other command's journal is open (under the key lock).
    True when one was put back: the next key command (or `key resume`) finishes it."""
    parked = parked_path(duo)
    if not parked.exists() or journal_path(duo).exists():
        return False
    os.replace(parked, journal_path(duo))
    return True


def pending(duo: Duo) -> Journal | None:
    """The journal a killed (or failed past its commit point) command left, if any."""
    path = journal_path(duo)
    try:
        return Journal.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise DuoError(f"{path}: unreadable key journal ({exc}); look at it, then remove it") from None


@contextmanager
def key_lock(duo: Duo, what: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """The duo's one key lock (on this controller): waits for another key command to end."""
    path = state_dir(duo) / "keys.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KeyLockError(
                        f"{what}: another key command holds the key lock ({path}) for over {wait:.0f} s"
                    ) from None
                if not told:
                    log.info("%s: waiting for another key command to finish (%s)", what, path)
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
