"""The backup store: a folder of key bundles, one 0600 JSON file each.

It holds wrapped keys only. A put is confirmed by reading the file back and
comparing digests, so "the backup has it" means it is on disk and readable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)


SNAPSHOTS_KEPT = 20


class BackupError(DuoError):
    """The backup store cannot take or give a bundle."""


class BackupStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def bundles_dir(self) -> Path:
        return self.root / "bundles"

    def path(self, locator: str) -> Path:
        return self.bundles_dir / f"{locator}.json"

    def check_writable(self) -> None:
        """Fail early, before any key exists, when the store cannot take a bundle."""
        try:
            self.bundles_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BackupError(f"backup store {self.bundles_dir}: cannot create: {exc.strerror}") from None
        if not os.access(self.bundles_dir, os.W_OK | os.X_OK):
            raise BackupError(f"backup store {self.bundles_dir}: not writable")

    def put(self, bundle: KeyBundle) -> str:
        """Store a bundle and confirm it by reading it back; returns the confirmed digest."""
        self.check_writable()
        path = self.path(bundle.locator)
        try:
            write_atomic(path, bundle.to_json() + "\n", mode=0o600)
            stored = KeyBundle.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BackupError(f"backup store {path}: cannot write: {exc.strerror}") from None
        if stored.digest() != bundle.digest():
            raise BackupError(f"backup store {path}: read-back does not match what was written")
        log.info("backup: stored bundle %s (zone %s, %s)", bundle.locator, bundle.zone, bundle.role)
        return stored.digest()

    def get(self, locator: str) -> KeyBundle:
        path = self.path(locator)
        try:
            return KeyBundle.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BackupError(f"backup store {path}: cannot read: {exc.strerror}") from None

    def remove(self, locator: str) -> None:
        """Idempotent: a bundle that is not there (nor its folder) is removed already."""
        with contextlib.suppress(NotADirectoryError):  # no bundles folder, so no such bundle
            self.path(locator).unlink(missing_ok=True)

    # --- snapshots: the duo's zones and enforcer key states, to rebuild nodes from -------

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def put_snapshot(self, snapshot: dict[str, Any], keep: int = SNAPSHOTS_KEPT) -> Path:
        """Store a snapshot (0600), confirmed by reading it back; the oldest beyond `keep` go."""
        self.snapshots_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(float(snapshot["taken"])))
        path = self.snapshots_dir / f"{stamp}.json"
        text = json.dumps(snapshot, sort_keys=True)
        try:
            write_atomic(path, text + "\n", mode=0o600)
            if json.loads(path.read_text(encoding="utf-8")) != json.loads(text):
                raise BackupError(f"backup store {path}: read-back does not match what was written")
        except OSError as exc:
            raise BackupError(f"backup store {path}: cannot write: {exc.strerror}") from None
        for old in sorted(self.snapshots_dir.glob("*.json"))[:-keep]:
            old.unlink()
        return path

    def latest_snapshot(self) -> dict[str, Any] | None:
        paths = sorted(self.snapshots_dir.glob("*.json")) if self.snapshots_dir.exists() else []
        if not paths:
            return None
        data: dict[str, Any] = json.loads(paths[-1].read_text(encoding="utf-8"))
        return data

    # --- retention: when each key was first seen dead on every node ------------------------

    @property
    def dead_ledger(self) -> Path:
        return self.root / "state" / "dead-since.json"

    def dead_since(self) -> dict[str, float]:
        if not self.dead_ledger.exists():
            return {}
        return {k: float(v) for k, v in json.loads(self.dead_ledger.read_text(encoding="utf-8")).items()}

    def save_dead_since(self, ledger: dict[str, float]) -> None:
        self.dead_ledger.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.dead_ledger, json.dumps(ledger, sort_keys=True, indent=1) + "\n", mode=0o600)

    # --- the last `backup verify` (for the metrics exporter) ---------------------------------

    @property
    def verify_record(self) -> Path:
        return self.root / "state" / "last-verify.json"

    def last_verify(self) -> dict[str, object] | None:
        if not self.verify_record.exists():
            return None
        found: dict[str, object] = json.loads(self.verify_record.read_text(encoding="utf-8"))
        return found

    def save_verify(self, record: dict[str, object]) -> None:
        self.verify_record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.verify_record, json.dumps(record, sort_keys=True) + "\n", mode=0o600)

    def list(self) -> list[KeyBundle]:
        if not self.bundles_dir.exists():
            return []
        return [
            KeyBundle.from_json(p.read_text(encoding="utf-8"))
            for p in sorted(self.bundles_dir.glob("*.json"))
        ]
