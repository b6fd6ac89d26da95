"""What a check finds: problems with a severity, per zone, and the overall verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class Problem:
    severity: Severity
    source: str  # a node, secondary, file, or "duo" for cross-source findings
    message: str


@dataclass
class ZoneReport:
    zone: str
    problems: list[Problem] = field(default_factory=list)
    serials: dict[str, int] = field(default_factory=dict)
    signatures: dict[str, int] = field(default_factory=dict)
    min_expiry_days: float | None = None
    # Per copy, for the metrics exporter (duo_ods.metrics): the soonest RRSIG expiration (epoch
    # seconds), the DNSKEY set's id, and its signatures failing under some other copy's keys.
    expirations: dict[str, int] = field(default_factory=dict)
    keysets: dict[str, str] = field(default_factory=dict)
    cross_failures: dict[str, int] = field(default_factory=dict)
    # Every ordered pair of copies compared: (whose signatures, whose keys) -> how many of the first's
    # signatures fail under the second's DNSKEY RRset. With N copies, N * (N - 1) pairs, so a report
    # shows each pair was cross-validated (`check --json`: "cross_validated").
    cross_pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    key_state_drift: int | None = None  # keys whose enforcer states differ (None: not compared)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "critical" for p in self.problems)

    def add(self, severity: Severity, source: str, message: str) -> None:
        self.problems.append(Problem(severity, source, message))


@dataclass(frozen=True)
class Thresholds:
    warn_expiry_days: float = 3.0
    crit_expiry_days: float = 1.0
    serial_spread: int = 10
    # A secondary serving other data than the zone's newest input this long after it was
    # recorded is critical (check.newest); NOTIFY and AXFR take seconds, a catch-up at most
    # [serials] level_interval.
    stale_after: float = 120.0
