"""Parsers for the ODS clients' table output (pure functions, unit tested on real output)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnforcerZone:
    name: str
    policy: str
    next_change: str
    signconf: str


def parse_zone_list(text: str) -> list[EnforcerZone]:
    """`ods-enforcer zone list` -> zones. Its 'No zones in database.' gives []."""
    zones: list[EnforcerZone] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("Zone:") and "Policy:" in line:
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        # Columns: name, policy, next change (several words), signconf path (last word).
        parts = line.split()
        zones.append(EnforcerZone(parts[0], parts[1], " ".join(parts[2:-1]), parts[-1]))
    return zones
