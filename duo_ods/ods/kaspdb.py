"""Direct access to the enforcer's database (kasp.db), for what ODS 2.1.12 has no command for.

Four things only:
- importing a batch of keys the nodes' HSMs hold, as the rows `key import --keystate generate`
  writes, in one transaction (import_keys says why the command is not used for a batch);
- putting a shared successor key into the enforcer's spare-key pool (table hsmKey), which
  `key rollover` takes it from: ODS 2.1.12 has no command to add an outside key to the pool
  (`key import` makes a key the zone uses at once, and a second active ZSK stays forever);
- reading every key's enforcer state (keyData, keyState), and writing it back into a rebuilt
  node, so a restored node resumes where its keys were instead of starting them over
  (`key import --keystate` maps onto a few fixed states and stamps them "now");
- forgetting the row of a key that a deleted zone released (`zone delete` keeps it in hsmKey,
  state DELETE, and `key import` then refuses that CKA_ID for good: "Already used this key with
  this locator"), so a zone that comes back can be given its old keys again (duo_ods.keys.reuse).

Every write first checks that the database is the schema this code was written against
(ODS 2.1.12: databaseVersion 1 and the columns below) and refuses any other: a different
layout means the enforcer may read these rows differently. Remove this module's writes when
ODS gains commands for them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from duo_ods.errors import NodeError

SCHEMA_VERSION = 1
# The columns ODS 2.1.12's schema.sqlite gives the tables this module reads or writes.
KNOWN_COLUMNS: dict[str, tuple[str, ...]] = {
    "hsmKey": (
        "id", "rev", "policyId", "locator", "state", "bits", "algorithm", "role", "inception",
        "isRevoked", "keyType", "repository", "backup",
    ),
    "keyData": (
        "id", "rev", "zoneId", "hsmKeyId", "algorithm", "inception", "role", "introducing",
        "shouldRevoke", "standby", "activeZsk", "publish", "activeKsk", "dsAtParent", "keytag", "minimize",
    ),
    "keyState": ("id", "rev", "keyDataId", "type", "state", "lastChange", "minimize", "ttl"),
    "zone": (
        "id", "rev", "policyId", "name", "signconfNeedsWriting", "signconfPath", "nextChange",
        "ttlEndDs", "ttlEndDk", "ttlEndRs", "rollKskNow", "rollZskNow", "rollCskNow", "inputAdapterType",
        "inputAdapterUri", "outputAdapterType", "outputAdapterUri", "nextKskRoll", "nextZskRoll",
        "nextCskRoll",
    ),
    "keyDependency": ("id", "rev", "zoneId", "fromKeyDataId", "toKeyDataId", "type"),
    "policy": ("id", "rev", "name"),  # only the columns used; the table has more
}  # fmt: skip

# hsmKey enums (enforcer/src/db/hsm_key.h)
HSM_UNUSED = 1
HSM_KEY_TYPE_RSA = 1  # the only key type ODS knows: its pool query asks for it whatever the algorithm
HSM_NO_BACKUP = 0
ROLES = {"KSK": 1, "ZSK": 2, "CSK": 3}
# keyState.type (enforcer/src/db/key_state.h)
RECORD_TYPES = {0: "ds", 1: "rrsig", 2: "dnskey", 3: "rrsigdnskey"}
# keyState.state
STATES = {0: "hidden", 1: "rumoured", 2: "omnipresent", 3: "unretentive", 4: "na"}
# The keyData columns that are enforcer state (the rest identify the key).
KEYDATA_STATE = (
    "introducing", "shouldRevoke", "standby", "activeZsk", "publish", "activeKsk", "dsAtParent", "minimize",
)  # fmt: skip
# The zone columns that are enforcer state (timers and pending rollovers).
ZONE_STATE = (
    "nextChange", "ttlEndDs", "ttlEndDk", "ttlEndRs", "rollKskNow", "rollZskNow", "rollCskNow",
    "nextKskRoll", "nextZskRoll", "nextCskRoll",
)  # fmt: skip
TIMEOUT = 10.0  # seconds to wait for the running enforcer's write lock


@dataclass(frozen=True)
class RecordState:
    """One of a key's four records (ds, dnskey, rrsigdnskey, rrsig) as the enforcer tracks it."""

    type: str
    state: str
    last_change: int
    minimize: int
    ttl: int


@dataclass(frozen=True)
class KeyStates:
    """A key of a zone with every piece of enforcer state it carries."""

    zone: str
    locator: str
    role: str
    algorithm: int
    inception: int
    keytag: int
    flags: dict[str, int]  # the KEYDATA_STATE columns
    records: tuple[RecordState, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> KeyStates:
        return KeyStates(
            zone=data["zone"], locator=data["locator"], role=data["role"], algorithm=int(data["algorithm"]),
            inception=int(data["inception"]), keytag=int(data["keytag"]),
            flags={k: int(v) for k, v in data["flags"].items()},
            records=tuple(RecordState(**r) for r in data["records"]),
        )  # fmt: skip

    def summary(self) -> dict[str, str]:
        """Record type -> state: what two nodes must agree on."""
        return {r.type: r.state for r in self.records}

    @property
    def dead(self) -> bool:
        return is_dead(self.to_json())


def is_dead(key: dict[str, Any]) -> bool:
    """A key the zone is done with: going out, and none of its records anywhere any more.

    (`ods-enforcer key list` never says "dead" in 2.1.12, and without <Purge> the rows stay.)
    """
    return not key["flags"]["introducing"] and all(r["state"] in {"hidden", "na"} for r in key["records"])


@dataclass(frozen=True)
class ZoneState:
    """A zone's enforcer state: its own timers, its keys, and the dependencies between them."""

    zone: str
    fields: dict[str, int]  # the ZONE_STATE columns
    keys: tuple[KeyStates, ...]
    dependencies: tuple[tuple[str, str, int], ...]  # (from locator, to locator, type)

    def to_json(self) -> dict[str, Any]:
        return {
            "zone": self.zone, "fields": self.fields, "keys": [k.to_json() for k in self.keys],
            "dependencies": [list(d) for d in self.dependencies],
        }  # fmt: skip

    @staticmethod
    def from_json(data: dict[str, Any]) -> ZoneState:
        return ZoneState(
            zone=data["zone"], fields={k: int(v) for k, v in data["fields"].items()},
            keys=tuple(KeyStates.from_json(k) for k in data["keys"]),
            dependencies=tuple((str(f), str(t), int(k)) for f, t, k in data["dependencies"]),
        )  # fmt: skip


def schema_problem(conn: sqlite3.Connection) -> str | None:
    """Why this database is not the known ODS 2.1.12 schema, or None when it is."""
    try:
        versions = [row[0] for row in conn.execute("SELECT version FROM databaseVersion")]
    except sqlite3.DatabaseError as exc:
        return f"no databaseVersion table ({exc})"
    if versions != [SCHEMA_VERSION]:
        return f"database version {versions}, expected [{SCHEMA_VERSION}]"
    for table, expected in KNOWN_COLUMNS.items():
        columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        # policy: only its leading columns are used, so only they must match
        seen = columns[: len(expected)] if table == "policy" else columns
        if seen != expected:
            return f"table {table} has columns {list(columns)}, expected {list(expected)}"
    return None


def _refuse_unknown_schema(conn: sqlite3.Connection, db: Path) -> None:
    problem = schema_problem(conn)
    if problem is not None:
        raise NodeError(f"{db}: not the OpenDNSSEC 2.1.12 schema ods-duo knows ({problem}); refusing")


@contextmanager
def _open(db: Path, write: bool) -> Iterator[sqlite3.Connection]:
    if not db.exists():
        raise NodeError(f"{db}: no enforcer database")
    uri = f"file:{db}?mode={'rw' if write else 'ro'}"
    conn = sqlite3.connect(uri, uri=True, timeout=TIMEOUT, isolation_level=None)
    try:
        _refuse_unknown_schema(conn, db)
        # Reads too run in one transaction: a running enforcer must not change rows between
        # the SELECTs of one read (a restore copies one moment of the peer's state).
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _policy_id(conn: sqlite3.Connection, policy: str) -> int:
    row = conn.execute("SELECT id FROM policy WHERE name = ?", (policy,)).fetchone()
    if row is None:
        raise NodeError(f"policy {policy} is not in the enforcer database; run policy import")
    return int(row[0])


def pool_add(
    db: Path,
    *,
    policy: str,
    locator: str,
    role: str,
    algorithm: int,
    bits: int,
    inception: int,
    repository: str,
) -> bool:
    """Put a key the HSM holds into the policy's spare-key pool. False when it is there already."""
    with _open(db, write=True) as conn:
        if conn.execute("SELECT 1 FROM hsmKey WHERE locator = ?", (locator,)).fetchone():
            return False
        conn.execute(
            "INSERT INTO hsmKey (policyId, locator, state, bits, algorithm, role, inception, isRevoked,"
            " keyType, repository, backup) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (
                _policy_id(conn, policy), locator, HSM_UNUSED, bits, algorithm, ROLES[role], inception,
                HSM_KEY_TYPE_RSA, repository, HSM_NO_BACKUP,
            ),
        )  # fmt: skip
        return True


def pool_remove(db: Path, locator: str) -> bool:
    """Take a key out of the pool again, only while no zone has taken it."""
    with _open(db, write=True) as conn:
        cur = conn.execute("DELETE FROM hsmKey WHERE locator = ? AND state = ?", (locator, HSM_UNUSED))
        return cur.rowcount > 0


HSM_DELETE = 4  # hsmKey.state of a key a deleted zone released (hsm_key_factory_release_key_id)


def release_stale(db: Path, locator: str) -> bool:
    """Forget a key's hsmKey row that no zone uses any more (state DELETE, no keyData refers to it),
    so `key import` takes that CKA_ID again. The key itself stays in the HSM. False: no such row."""
    with _open(db, write=True) as conn:
        cur = conn.execute(
            "DELETE FROM hsmKey WHERE locator = ? AND state = ? AND id NOT IN (SELECT hsmKeyId FROM keyData)",
            (locator, HSM_DELETE),
        )
        return cur.rowcount > 0


def pool_keys(db: Path) -> list[str]:
    """Locators of the keys waiting in the pool."""
    with _open(db, write=False) as conn:
        rows = conn.execute("SELECT locator FROM hsmKey WHERE state = ? ORDER BY id", (HSM_UNUSED,))
        return [str(r[0]) for r in rows]


_KEYS_SQL = f"""
SELECT keyData.id, zone.name, hsmKey.locator, keyData.role, keyData.algorithm, keyData.inception,
       keyData.keytag, {", ".join("keyData." + c for c in KEYDATA_STATE)}
FROM keyData JOIN zone ON zone.id = keyData.zoneId JOIN hsmKey ON hsmKey.id = keyData.hsmKeyId
WHERE zone.name = ? ORDER BY keyData.id
"""
_ROLE_NAMES = {v: k for k, v in ROLES.items()}
_TYPE_CODES = {v: k for k, v in RECORD_TYPES.items()}
_STATE_CODES = {v: k for k, v in STATES.items()}


def _read_zone(conn: sqlite3.Connection, zone_id: int, zone: str) -> ZoneState:
    fields = conn.execute(f"SELECT {', '.join(ZONE_STATE)} FROM zone WHERE id = ?", (zone_id,)).fetchone()
    keys: list[KeyStates] = []
    locators: dict[int, str] = {}
    for row in conn.execute(_KEYS_SQL, (zone,)).fetchall():
        locators[int(row[0])] = str(row[2])
        records = tuple(
            RecordState(RECORD_TYPES[int(t)], STATES[int(s)], int(lc), int(m), int(ttl))
            for t, s, lc, m, ttl in conn.execute(
                "SELECT type, state, lastChange, minimize, ttl FROM keyState WHERE keyDataId = ?"
                " ORDER BY type",
                (row[0],),
            )
        )
        keys.append(
            KeyStates(
                zone=zone, locator=str(row[2]), role=_ROLE_NAMES[int(row[3])], algorithm=int(row[4]),
                inception=int(row[5]), keytag=int(row[6]),
                flags={c: int(v) for c, v in zip(KEYDATA_STATE, row[7:], strict=True)}, records=records,
            )
        )  # fmt: skip
    dependencies = tuple(
        (locators[int(f)], locators[int(t)], int(kind))
        for f, t, kind in conn.execute(
            "SELECT fromKeyDataId, toKeyDataId, type FROM keyDependency WHERE zoneId = ? ORDER BY id",
            (zone_id,),
        )
        if int(f) in locators and int(t) in locators
    )
    return ZoneState(
        zone, dict(zip(ZONE_STATE, (int(v) for v in fields), strict=True)), tuple(keys), dependencies
    )


def read_states(db: Path, zone: str | None = None) -> list[ZoneState]:
    """Every zone (or one) with its keys and their enforcer state."""
    with _open(db, write=False) as conn:
        sql = "SELECT id, name FROM zone" + (" WHERE name = ?" if zone else "") + " ORDER BY name"
        zones = conn.execute(sql, (zone,) if zone else ()).fetchall()
        return [_read_zone(conn, int(zone_id), str(name)) for zone_id, name in zones]


HSM_PRIVATE = 2  # hsmKey.state of a key one zone uses (HSM_KEY_STATE_PRIVATE)
DENIAL_NSEC3 = 1  # policy.denialType (POLICY_DENIAL_TYPE_NSEC3)
# `key import --keystate generate` in ODS 2.1.12 (keystate_import_cmd.c, ksk_mapping[0] and
# zsk_mapping[0]): the ds, dnskey, rrsigdnskey and rrsig states a new key starts with. A CSK takes
# the ZSK row there (only keytype 1 takes the KSK row); copied as it is.
_GENERATE_STATES = {"KSK": (0, 0, 0, 4), "ZSK": (4, 0, 4, 0), "CSK": (4, 0, 4, 0)}


@dataclass(frozen=True)
class NewKey:
    """A key the node's HSM holds, for a zone's first use (what `key import` is told)."""

    zone: str
    locator: str
    role: str
    algorithm: int
    bits: int
    inception: int
    keytag: int
    repository: str


def import_keys(db: Path, keys: list[NewKey]) -> list[bool]:
    """The rows `ods-enforcer key import --keystate generate` writes, for many keys in one
    transaction; per key, False when the zone has it already (idempotent, like the flows' import).

    Why not the command: ODS 2.1.12's `key import` opens three HSM contexts and looks the key up
    in the token four times, and SoftHSM's file store scans every object for each lookup, so one
    import cost a tenth of a second at 200 zones and grew with every key (measured in
    bench/results/keys.md). The caller has checked that its HSM holds every key (as the command
    does). Rows as keystate_import_cmd.c makes them; the running enforcer reads them on its next
    pass over the zone (the caller then runs `enforce`). A stale row of a deleted zone's key is
    forgotten first (release_stale), a row in any other state refused as the command refuses it.
    """
    done: list[bool] = []
    with _open(db, write=True) as conn:
        for key in keys:
            zone = conn.execute("SELECT id, policyId FROM zone WHERE name = ?", (key.zone,)).fetchone()
            if zone is None:
                raise NodeError(f"{db}: unknown zone {key.zone}")
            zone_id, policy_id = int(zone[0]), int(zone[1])
            hsm = conn.execute("SELECT id, state FROM hsmKey WHERE locator = ?", (key.locator,)).fetchone()
            if hsm is not None:
                used = conn.execute("SELECT zoneId FROM keyData WHERE hsmKeyId = ?", (hsm[0],)).fetchone()
                if used is not None and int(used[0]) == zone_id:
                    done.append(False)
                    continue
                if used is None and int(hsm[1]) == HSM_DELETE:
                    conn.execute("DELETE FROM hsmKey WHERE id = ?", (hsm[0],))
                else:
                    raise NodeError(f"{db}: key {key.locator} is used already (zone {key.zone})")
            done.append(True)
            _insert_key(conn, db, key, zone_id, policy_id)
    return done


def _insert_key(conn: sqlite3.Connection, db: Path, key: NewKey, zone_id: int, policy_id: int) -> None:
    role = ROLES[key.role]
    policy_key = conn.execute(
        "SELECT algorithm, minimize FROM policyKey WHERE policyId = ? AND role = ?", (policy_id, role)
    ).fetchone()
    if policy_key is None:
        raise NodeError(f"{db}: zone {key.zone}'s policy has no {key.role}")
    if int(policy_key[0]) != key.algorithm:
        raise NodeError(
            f"{db}: zone {key.zone}'s policy signs with algorithm {policy_key[0]}, not {key.algorithm}"
        )
    setmin = int(policy_key[1])
    ds_ttl, keys_ttl, soa_ttl, soa_min, denial, denial_ttl, max_zone_ttl = conn.execute(
        "SELECT parentDsTtl, keysTtl, zoneSoaTtl, zoneSoaMinimum, denialType, denialTtl,"
        " signaturesMaxZoneTtl FROM policy WHERE id = ?",
        (policy_id,),
    ).fetchone()
    signed_ttl = max(denial_ttl, max_zone_ttl) if denial == DENIAL_NSEC3 else max_zone_ttl
    rrsig_ttl = max(min(soa_ttl, soa_min), signed_ttl)
    hsm_id = conn.execute(
        "INSERT INTO hsmKey (policyId, locator, state, bits, algorithm, role, inception, isRevoked,"
        " keyType, repository, backup) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
        (
            policy_id, key.locator, HSM_PRIVATE, key.bits, key.algorithm, role, key.inception,
            HSM_KEY_TYPE_RSA, key.repository, HSM_NO_BACKUP,
        ),
    ).lastrowid  # fmt: skip
    # keystate generate: introducing, nothing published or active yet, no DS.
    key_id = conn.execute(
        "INSERT INTO keyData (zoneId, hsmKeyId, algorithm, inception, role, introducing, shouldRevoke,"
        " standby, activeZsk, publish, activeKsk, dsAtParent, keytag, minimize)"
        " VALUES (?, ?, ?, ?, ?, 1, 0, 0, 0, 0, 0, 0, ?, ?)",
        (zone_id, hsm_id, key.algorithm, key.inception, role, key.keytag, setmin),
    ).lastrowid
    ds, dnskey, rrsigdnskey, rrsig = _GENERATE_STATES[key.role]
    for record, state, minimize, ttl in (  # keyState.type codes: RECORD_TYPES
        (0, ds, (setmin >> 2) & 1, ds_ttl),
        (2, dnskey, (setmin >> 1) & 1, keys_ttl),
        (3, rrsigdnskey, 0, keys_ttl),
        (1, rrsig, setmin & 1, rrsig_ttl),
    ):
        conn.execute(
            "INSERT INTO keyState (keyDataId, type, state, lastChange, minimize, ttl)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, record, state, key.inception, minimize, ttl),
        )


def _key_row(conn: sqlite3.Connection, zone_id: int, zone: str, locator: str, db: Path) -> int:
    row = conn.execute(
        "SELECT keyData.id FROM keyData JOIN hsmKey ON hsmKey.id = keyData.hsmKeyId"
        " WHERE keyData.zoneId = ? AND hsmKey.locator = ?",
        (zone_id, locator),
    ).fetchone()
    if row is None:
        raise NodeError(f"zone {zone}: key {locator} is not in {db}; import it first")
    return int(row[0])


def write_states(db: Path, zones: list[ZoneState]) -> int:
    """Give zones and keys this enforcer already has the enforcer state in `zones`.

    For a node being rebuilt, with its enforcer stopped: its zones were added and their keys
    imported with the ODS commands, which made the rows; this sets those rows to what they
    were on the node they come from. All or nothing. Returns the number of keys written.
    """
    written = 0
    with _open(db, write=True) as conn:
        for state in zones:
            row = conn.execute("SELECT id FROM zone WHERE name = ?", (state.zone,)).fetchone()
            if row is None:
                raise NodeError(f"zone {state.zone} is not in {db}; add it first")
            zone_id = int(row[0])
            conn.execute(
                # signconfNeedsWriting: else the enforcer, seeing no state change of its own, never
                # writes the rebuilt node's signconf and its signer has nothing to sign with.
                f"UPDATE zone SET {', '.join(c + ' = ?' for c in ZONE_STATE)}, signconfNeedsWriting = 1,"
                " rev = rev + 1 WHERE id = ?",
                (*(state.fields[c] for c in ZONE_STATE), zone_id),
            )
            ids: dict[str, int] = {}
            for key in state.keys:
                key_id = ids[key.locator] = _key_row(conn, zone_id, state.zone, key.locator, db)
                conn.execute(
                    f"UPDATE keyData SET {', '.join(c + ' = ?' for c in KEYDATA_STATE)}, inception = ?,"
                    " keytag = ?, rev = rev + 1 WHERE id = ?",
                    (*(key.flags[c] for c in KEYDATA_STATE), key.inception, key.keytag, key_id),
                )
                for record in key.records:
                    cur = conn.execute(
                        "UPDATE keyState SET state = ?, lastChange = ?, minimize = ?, ttl = ?, rev = rev + 1"
                        " WHERE keyDataId = ? AND type = ?",
                        (
                            _STATE_CODES[record.state], record.last_change, record.minimize, record.ttl,
                            key_id, _TYPE_CODES[record.type],
                        ),
                    )  # fmt: skip
                    if cur.rowcount != 1:
                        raise NodeError(
                            f"zone {state.zone}: key {key.locator} has no {record.type} state row"
                        )
                written += 1
            conn.execute("DELETE FROM keyDependency WHERE zoneId = ?", (zone_id,))
            for source, target, kind in state.dependencies:
                conn.execute(
                    "INSERT INTO keyDependency (zoneId, fromKeyDataId, toKeyDataId, type)"
                    " VALUES (?, ?, ?, ?)",
                    (zone_id, ids[source], ids[target], kind),
                )
    return written
