"""What one refresh of the exporter saw: plain data, gathered by metrics.gather, turned into
metric families by metrics.families (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from duo_ods.check.model import ZoneReport
from duo_ods.metrics.watchfile import WatchStats
from duo_ods.protocol.ops import VerifyResult
from duo_ods.watch.plan import ZoneFileState

KeyViews = dict[str, list[dict[str, Any]]]  # zone -> its keys' enforcer states (kaspdb.KeyStates.to_json)


@dataclass
class WatcherView:
    """One node's watcher, from its files: what it did per zone file, and its numbers."""

    node: str
    files: dict[str, ZoneFileState] = field(default_factory=dict)
    stats: WatchStats | None = None
    restarts: dict[str, int] = field(default_factory=dict)  # daemon -> times its supervisor started it


@dataclass
class Checked:
    """The slow part, on its own interval: `check` on every zone, the key states, the backup store."""

    at: float = 0.0  # epoch seconds when it started (0: not yet)
    reports: list[ZoneReport] = field(default_factory=list)
    keys: dict[str, KeyViews] = field(default_factory=dict)  # node -> its enforcer database's key states
    bundles: int | None = None  # key bundles in the backup store (None: not read)
    snapshot_taken: float | None = None  # the backup store's snapshot (None: none, or not read)
    verify: VerifyResult | None = None  # the last `backup verify` (None: none, or not read)
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)  # what could not be read


@dataclass
class Observation:
    at: float  # epoch seconds of the refresh
    reports: list[ZoneReport] = field(default_factory=list)
    daemons: dict[str, dict[str, int | None]] = field(default_factory=dict)  # node -> daemon -> pid
    keys: dict[str, KeyViews] = field(default_factory=dict)  # node -> its enforcer database's key states
    lifetimes: dict[str, float] = field(default_factory=dict)  # role (KSK, ZSK, CSK) -> seconds
    bundles: int | None = None  # key bundles in the backup store (None: not read)
    snapshot_taken: float | None = None  # the backup store's snapshot (None: none, or not read)
    verify: VerifyResult | None = None  # the last `backup verify` (None: none, or not read)
    watchers: list[WatcherView] = field(default_factory=list)
    duration: float = 0.0  # seconds the refresh took
    errors: list[str] = field(default_factory=list)  # what could not be read
    checked_at: float | None = None  # when the check behind `reports` started (None: none yet)
    check_duration: float | None = None
