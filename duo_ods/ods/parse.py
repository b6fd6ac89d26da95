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


@dataclass(frozen=True)
class EnforcerKey:
    zone: str
    role: str  # KSK, ZSK or CSK
    state: str  # generate, publish, ready, active, retire, dead, mixed, ...
    next_transition: str
    bits: int
    algorithm: int
    locator: str  # CKA_ID as hex
    repository: str
    keytag: int


def parse_key_list_verbose(text: str) -> list[EnforcerKey]:
    """`ods-enforcer key list -v [-a]` -> keys.

    The 'date of next transition' column has a variable number of words, so the
    fixed columns are read from both ends of the line.
    """
    keys: list[EnforcerKey] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("Zone:") and "Keytype:" in line:
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        parts = line.split()
        zone, role, state = parts[0], parts[1], parts[2]
        bits, algorithm, locator, repository, keytag = parts[-5:]
        keys.append(
            EnforcerKey(
                zone,
                role,
                state,
                " ".join(parts[3:-5]),
                int(bits),
                int(algorithm),
                locator,
                repository,
                int(keytag),
            )
        )
    return keys


@dataclass(frozen=True)
class KeyRecordStates:
    """Per key, the enforcer's state of each record it governs (`key list -d`)."""

    zone: str
    role: str
    ds: str
    dnskey: str
    rrsig_dnskey: str
    rrsig: str
    published: bool
    active: bool
    locator: str


def parse_key_list_debug(text: str) -> list[KeyRecordStates]:
    """`ods-enforcer key list -d [-a]` -> record states per key."""
    keys: list[KeyRecordStates] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("Zone:") and "RRSIGDNSKEY:" in line:
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        p = line.split()
        keys.append(KeyRecordStates(p[0], p[1], p[2], p[3], p[4], p[5], p[6] == "1", p[7] == "1", p[8]))
    return keys
