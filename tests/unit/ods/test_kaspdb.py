"""kasp.db access against a database made from ODS's own schema.sqlite (no daemon needed)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from duo_ods.errors import NodeError
from duo_ods.ods import kaspdb

SCHEMA = Path("/usr/share/opendnssec/schema.sqlite")
pytestmark = pytest.mark.skipif(not SCHEMA.exists(), reason="needs opendnssec's schema.sqlite")


def _insert(conn: sqlite3.Connection, table: str, **values: object) -> int:
    """A row with every NOT NULL column filled: the given values, else 0."""
    row: dict[str, object] = {}
    for _, name, _type, notnull, default, pk in conn.execute(f"PRAGMA table_info({table})"):
        if pk or default is not None:
            continue
        if notnull:
            row[name] = 0
    row.update(values)
    cols = ", ".join(row)
    cur = conn.execute(
        f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values())
    )
    return int(cur.lastrowid or 0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "kasp.db"
    subprocess.run(["sqlite3", str(path)], input=SCHEMA.read_text(), text=True, check=True)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO databaseVersion (version) VALUES (1)")
        policy = _insert(conn, "policy", name="duo", description="d")
        zone = _insert(
            conn,
            "zone",
            name="example.test",
            policyId=policy,
            signconfPath="/x",
            inputAdapterType="File",
            inputAdapterUri="/i",
            outputAdapterType="DNS",
            outputAdapterUri="/o",
            ttlEndDs=11,
        )
        for locator, role in (("aa" * 16, 1), ("bb" * 16, 2)):
            hsm = _insert(
                conn,
                "hsmKey",
                policyId=policy,
                locator=locator,
                state=2,
                bits=256,
                algorithm=13,
                role=role,
                repository="duo",
                keyType=1,
            )
            key = _insert(
                conn, "keyData", zoneId=zone, hsmKeyId=hsm, algorithm=13, role=role, keytag=role * 100
            )
            for kind in range(4):
                _insert(conn, "keyState", keyDataId=key, type=kind, state=0, lastChange=1000 + kind, ttl=3600)
    return path


def test_read_states_names_every_record(db: Path) -> None:
    [zone] = kaspdb.read_states(db)
    assert zone.zone == "example.test"
    assert zone.fields["ttlEndDs"] == 11
    assert [(k.role, k.keytag) for k in zone.keys] == [("KSK", 100), ("ZSK", 200)]
    assert zone.keys[0].summary() == {
        "ds": "hidden",
        "rrsig": "hidden",
        "dnskey": "hidden",
        "rrsigdnskey": "hidden",
    }


def test_write_states_round_trip_through_json(db: Path, tmp_path: Path) -> None:
    [zone] = kaspdb.read_states(db)
    ksk = zone.keys[0]
    records = tuple(kaspdb.RecordState(r.type, "omnipresent", 5000, r.minimize, r.ttl) for r in ksk.records)
    changed = kaspdb.ZoneState(
        zone.zone,
        {**zone.fields, "ttlEndDk": 77},
        (
            kaspdb.KeyStates(**{**ksk.__dict__, "records": records, "flags": {**ksk.flags, "dsAtParent": 3}}),
            zone.keys[1],
        ),
        ((ksk.locator, zone.keys[1].locator, 2),),
    )
    restored = kaspdb.ZoneState.from_json(changed.to_json())
    assert kaspdb.write_states(db, [restored]) == 2
    [again] = kaspdb.read_states(db, "example.test")
    assert again == changed


def test_write_refuses_a_key_the_database_lacks(db: Path) -> None:
    [zone] = kaspdb.read_states(db)
    ghost = kaspdb.KeyStates(**{**zone.keys[0].__dict__, "locator": "cc" * 16})
    with pytest.raises(NodeError, match="not in"):
        kaspdb.write_states(db, [kaspdb.ZoneState(zone.zone, zone.fields, (ghost,), ())])
    assert kaspdb.read_states(db) == [zone]  # all or nothing


def test_pool_add_is_idempotent_and_remove_only_takes_unused(db: Path) -> None:
    args = {
        "policy": "duo",
        "locator": "dd" * 16,
        "role": "ZSK",
        "algorithm": 13,
        "bits": 256,
        "inception": 1,
        "repository": "duo",
    }
    assert kaspdb.pool_add(db, **args) is True
    assert kaspdb.pool_add(db, **args) is False
    assert kaspdb.pool_keys(db) == ["dd" * 16]
    assert kaspdb.pool_remove(db, "aa" * 16) is False  # in use by the zone
    assert kaspdb.pool_remove(db, "dd" * 16) is True
    assert kaspdb.pool_keys(db) == []


def test_pool_add_names_a_missing_policy(db: Path) -> None:
    with pytest.raises(NodeError, match="policy other"):
        kaspdb.pool_add(
            db,
            policy="other",
            locator="ee" * 16,
            role="KSK",
            algorithm=13,
            bits=256,
            inception=1,
            repository="duo",
        )


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("UPDATE databaseVersion SET version = 2", "database version"),
        ("ALTER TABLE hsmKey ADD COLUMN extra INT", "table hsmKey"),
    ],
)
def test_unknown_schema_is_refused_before_any_write(db: Path, sql: str, problem: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql)
    with pytest.raises(NodeError, match=problem):
        kaspdb.pool_add(
            db,
            policy="duo",
            locator="ff" * 16,
            role="KSK",
            algorithm=13,
            bits=256,
            inception=1,
            repository="duo",
        )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM hsmKey WHERE locator = ?", ("ff" * 16,)).fetchone()[0] == 0


def test_a_key_going_out_with_every_record_hidden_is_dead(db: Path) -> None:
    [zone] = kaspdb.read_states(db)
    ksk = zone.keys[0].to_json()
    ksk["flags"]["introducing"] = 1
    assert not kaspdb.is_dead(ksk)  # coming in, though nothing is published yet
    ksk["flags"]["introducing"] = 0
    assert kaspdb.is_dead(ksk)  # every record hidden
    ksk["records"][2]["state"] = "unretentive"
    assert not kaspdb.is_dead(ksk)


# --- import_keys: the rows `ods-enforcer key import --keystate generate` writes ---------------


@pytest.fixture
def lab_policy(db: Path) -> Path:
    """The lab policy's values that the imported rows carry (TTLs, minimize per role)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE policy SET parentDsTtl = 300, keysTtl = 300, zoneSoaTtl = 300, zoneSoaMinimum = 300,"
            " denialType = 1, denialTtl = 0, signaturesMaxZoneTtl = 3600"
        )
        policy = conn.execute("SELECT id FROM policy").fetchone()[0]
        for role, minimize in ((1, 4), (2, 1)):
            _insert(conn, "policyKey", policyId=policy, role=role, algorithm=13, minimize=minimize)
        _insert(
            conn, "zone", name="new.test", policyId=policy, signconfPath="/x", inputAdapterType="File",
            inputAdapterUri="/i", outputAdapterType="DNS", outputAdapterUri="/o",
        )  # fmt: skip
    return db


def _new(locator: str, role: str, zone: str = "new.test", algorithm: int = 13) -> kaspdb.NewKey:
    return kaspdb.NewKey(zone, locator, role, algorithm, 256, 1795981559, 57251, "duo")


def _rows(db: Path, locator: str) -> tuple[object, ...]:
    with sqlite3.connect(db) as conn:
        hsm = conn.execute(
            "SELECT locator, state, bits, algorithm, role, inception, isRevoked, keyType, repository, backup"
            " FROM hsmKey WHERE locator = ?",
            (locator,),
        ).fetchone()
        data = conn.execute(
            "SELECT keyData.id, keyData.algorithm, keyData.inception, keyData.role, introducing,"
            " shouldRevoke, standby, activeZsk, publish, activeKsk, dsAtParent, keytag, minimize FROM keyData"
            " JOIN hsmKey ON hsmKey.id = keyData.hsmKeyId WHERE locator = ?",
            (locator,),
        ).fetchone()
        states = conn.execute(
            "SELECT type, state, lastChange, minimize, ttl FROM keyState WHERE keyDataId = ? ORDER BY id",
            (data[0],),
        ).fetchall()
    return hsm, data[1:], states


def _locators(db: Path) -> dict[str, list[str]]:
    return {z.zone: [k.locator for k in z.keys] for z in kaspdb.read_states(db)}


def test_import_keys_writes_the_rows_ods_key_import_writes(lab_policy: Path) -> None:
    # Expected: the rows ODS 2.1.12's `key import --keystate generate` wrote for a KSK and a ZSK of a
    # lab zone (read from the lab's kasp.db right after the command, before any enforcer pass).
    t = 1795981559
    assert kaspdb.import_keys(lab_policy, [_new("c1" * 16, "KSK"), _new("c2" * 16, "ZSK")]) == [True, True]
    assert _rows(lab_policy, "c1" * 16) == (
        ("c1" * 16, 2, 256, 13, 1, t, 0, 1, "duo", 0),
        (13, t, 1, 1, 0, 0, 0, 0, 0, 0, 57251, 4),
        [(0, 0, t, 1, 300), (2, 0, t, 0, 300), (3, 0, t, 0, 300), (1, 4, t, 0, 3600)],
    )
    assert _rows(lab_policy, "c2" * 16) == (
        ("c2" * 16, 2, 256, 13, 2, t, 0, 1, "duo", 0),
        (13, t, 2, 1, 0, 0, 0, 0, 0, 0, 57251, 1),
        [(0, 4, t, 0, 300), (2, 0, t, 0, 300), (3, 4, t, 0, 300), (1, 0, t, 1, 3600)],
    )
    [zone] = kaspdb.read_states(lab_policy, "new.test")
    assert [(k.role, k.summary()["dnskey"]) for k in zone.keys] == [("KSK", "hidden"), ("ZSK", "hidden")]


def test_import_keys_is_idempotent(lab_policy: Path) -> None:
    assert kaspdb.import_keys(lab_policy, [_new("c1" * 16, "KSK")]) == [True]
    assert kaspdb.import_keys(lab_policy, [_new("c1" * 16, "KSK"), _new("c2" * 16, "ZSK")]) == [False, True]
    assert _locators(lab_policy) == {
        "new.test": ["c1" * 16, "c2" * 16],
        "example.test": ["aa" * 16, "bb" * 16],
    }


def test_import_keys_refuses_a_key_another_zone_uses_and_writes_nothing(lab_policy: Path) -> None:
    with pytest.raises(NodeError, match=f"key {'aa' * 16} is used already"):
        kaspdb.import_keys(lab_policy, [_new("c1" * 16, "KSK"), _new("aa" * 16, "KSK")])
    assert _locators(lab_policy)["new.test"] == []  # all or nothing


def test_import_keys_takes_back_a_key_a_deleted_zone_released(lab_policy: Path) -> None:
    with sqlite3.connect(lab_policy) as conn:
        policy = conn.execute("SELECT id FROM policy").fetchone()[0]
        _insert(conn, "hsmKey", policyId=policy, locator="c3" * 16, state=kaspdb.HSM_DELETE, bits=256,
                algorithm=13, role=1, repository="duo", keyType=1)  # fmt: skip
    assert kaspdb.import_keys(lab_policy, [_new("c3" * 16, "KSK")]) == [True]
    assert _rows(lab_policy, "c3" * 16)[0][1] == kaspdb.HSM_PRIVATE


def test_import_keys_names_an_unknown_zone_and_a_wrong_algorithm(lab_policy: Path) -> None:
    with pytest.raises(NodeError, match=r"unknown zone gone\.test"):
        kaspdb.import_keys(lab_policy, [_new("c1" * 16, "KSK", zone="gone.test")])
    with pytest.raises(NodeError, match="algorithm 13, not 8"):
        kaspdb.import_keys(lab_policy, [_new("c1" * 16, "KSK", algorithm=8)])
