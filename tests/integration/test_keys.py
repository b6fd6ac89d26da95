"""Shared keys on real ODS and SoftHSM: one DNSKEY RRset and DS, two independent signers (issue 3)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import dns.dnssec
import dns.rdatatype
import dns.rrset
import pytest

from duo_ods.hsm import keys as hsm_keys
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_DECRYPT,
    CKA_KEY_TYPE,
    CKA_TOKEN,
    CKA_VALUE,
    CKK_AES,
    CKO_SECRET_KEY,
)
from duo_ods.hsm.kek import delete_kek, has_kek
from duo_ods.hsm.token import open_session
from duo_ods.keys.bundle import KeyBundle
from tests.integration.conftest import Lab
from tests.support.dnssec import (
    cross_validate,
    dnskey_rrset,
    signatures,
    verify_with_tools,
    write_zone,
)
from tests.support.kwp import ec_private_scalar, kek_by_value, software_kwp_unwrap

pytestmark = pytest.mark.integration

KEK = "ods-duo-kek"
CKM_AES_ECB = 0x1081

BEE_ZONE = """$ORIGIN bee.test.
$TTL 300
@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300
@ IN NS ns1
@ IN NS ns2
ns1 IN A 192.0.2.1
ns2 IN A 192.0.2.2
www IN A 192.0.2.80
sub IN NS ns.sub
sub IN DS 4711 13 2 ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789
ns.sub IN A 192.0.2.99
"""


def zone_text(name: str) -> str:
    return BEE_ZONE.replace("bee.test.", f"{name}.")


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory) -> Lab:  # type: ignore[no-untyped-def]
    """The lab (example.test keyed on node a, its key_origin) plus bee.test keyed on node b."""
    lab = make_lab("127.0.0.60")
    zone_file = tmp_path_factory.mktemp("zones") / "bee.test"
    zone_file.write_text(BEE_ZONE)
    lab.duo("zone", "add", "bee.test", "--file", str(zone_file))
    lab.duo("key", "create", "bee.test", "--origin", "b")
    return lab


def enforcer_locators(lab: Lab, node: str, zone: str) -> set[str]:
    out = lab.enforcer(node, "key", "list", "-v", "-a")
    return {line.split()[-3] for line in out.splitlines() if line.startswith(zone + " ")}


def hsm_locators(lab: Lab, node: str) -> set[str]:
    proc = lab.duo("node", "op", "hsm-list", "--node", node)  # the same op the transport runs
    return {k["locator"] for k in json.loads(proc.stdout)["result"]["keys"]}


@pytest.mark.parametrize("zone", ["example.test", "bee.test"])
def test_same_dnskeys_different_signatures_and_cross_validation(lab: Lab, zone: str, tmp_path: Path) -> None:
    za = lab.signed("a", zone)
    zb = lab.signed("b", zone)
    assert dnskey_rrset(za) == dnskey_rrset(zb)
    sig_a, sig_b = signatures(za), signatures(zb)
    assert sig_a and sig_b and not (sig_a & sig_b), "each signer must make its own RRSIGs"
    for signed, keys_from in ((za, zb), (zb, za)):
        result = cross_validate(signed, dnskey_rrset(keys_from))
        assert result.failures == []
        assert result.validated == len(signatures(signed))
    for name, z in (("a", za), ("b", zb)):
        verify_with_tools(write_zone(z, tmp_path / f"{zone}.{name}"), zone)


def test_cross_validation_fails_under_a_foreign_key(lab: Lab) -> None:
    """The check above can fail: a signer's RRSIGs do not validate under another zone's keys."""
    za = lab.signed("a", "example.test")
    foreign = dnskey_rrset(lab.signed("b", "bee.test"))
    result = cross_validate(za, dns.rrset.from_rdata_list(za.origin, foreign.ttl, list(foreign)))
    assert result.validated == 0 and result.failures


@pytest.mark.parametrize("zone", ["example.test", "bee.test"])
def test_key_ds_gives_one_ds_matching_the_ksk_on_both(lab: Lab, zone: str) -> None:
    report = json.loads(lab.duo("--json", "key", "ds", zone).stdout)
    assert report["warnings"] == []
    assert len(report["ds"]) == 1
    for node in ("a", "b"):
        z = lab.signed(node, zone)
        (ksk,) = [k for k in dnskey_rrset(z) if k.flags == 257]
        expected = dns.dnssec.make_ds(z.origin, ksk, "SHA256").to_text()
        assert report["ds"] == [f"{zone}. IN DS {expected}"]


def test_key_list_side_by_side(lab: Lab) -> None:
    rows = json.loads(lab.duo("--json", "key", "list").stdout)
    assert rows["ok"] is True
    by_zone: dict[str, list[str]] = {}
    for row in rows["keys"]:
        assert set(row["nodes"]) == {"a", "b"} and not row["differs"]
        by_zone.setdefault(row["zone"], []).append(row["role"])
    assert {z: sorted(r) for z, r in by_zone.items()} == {
        "example.test": ["KSK", "ZSK"],
        "bee.test": ["KSK", "ZSK"],
    }


def test_kek_init_refuses_to_run_twice(lab: Lab) -> None:
    proc = lab.duo("kek", "init", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "ods-duo: error: the KEK is set up already on a, b, backup; --replace replaces it"
    )
    assert "the backup token keeps the old KEK for unwrapping only" in proc.stderr


def _new_zone(lab: Lab, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(zone_text(name))
    lab.duo("zone", "add", name, "--file", str(path))


def test_peer_down_refuses_and_no_enforcer_gets_a_key(lab: Lab, tmp_path: Path) -> None:
    _new_zone(lab, "down.test", tmp_path)
    before = hsm_locators(lab, "a")
    lab.duo("node", "stop", "b")
    try:
        proc = lab.duo("key", "create", "down.test", "--origin", "a", check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("ods-duo: error: step preflight on b: node b: enforcer is not running")
    finally:
        lab.duo("node", "start", "b")
    assert enforcer_locators(lab, "a", "down.test") == set()
    assert enforcer_locators(lab, "b", "down.test") == set()
    assert hsm_locators(lab, "a") == before


def test_peer_token_missing_refuses(lab: Lab, tmp_path: Path) -> None:
    _new_zone(lab, "notoken.test", tmp_path)
    tokens = Path(lab.node("b")["base_dir"]) / "tokens"
    aside = tokens.with_name("tokens.aside")
    tokens.rename(aside)
    tokens.mkdir()
    try:
        proc = lab.duo("key", "create", "notoken.test", check=False)
        assert proc.returncode == 1
        assert "step preflight on b:" in proc.stderr and "DUO-LAB-B" in proc.stderr
    finally:
        shutil.rmtree(tokens)
        aside.rename(tokens)
    assert enforcer_locators(lab, "a", "notoken.test") == set()
    assert enforcer_locators(lab, "b", "notoken.test") == set()


def test_backup_unwritable_undoes_the_copies(lab: Lab, tmp_path: Path) -> None:
    _new_zone(lab, "nobackup.test", tmp_path)
    before = {n: hsm_locators(lab, n) for n in ("a", "b")}
    bundles = lab.dir / "backup" / "bundles"
    aside = bundles.with_name("bundles.aside")
    bundles.rename(aside)
    bundles.write_text("not a folder\n")  # root writes anywhere: a file where the folder was stops it
    try:
        proc = lab.duo("key", "create", "nobackup.test", check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("ods-duo: error: step backup on backup: backup store ")
    finally:
        bundles.unlink()
        aside.rename(bundles)
    for node in ("a", "b"):
        assert enforcer_locators(lab, node, "nobackup.test") == set()
        assert hsm_locators(lab, node) == before[node], "the copies made before the failure are removed"
    # and a re-run is safe
    lab.duo("key", "create", "nobackup.test")
    assert len(enforcer_locators(lab, "a", "nobackup.test")) == 2


def test_backup_list_shows_where_each_key_lives(lab: Lab) -> None:
    rows = json.loads(lab.duo("--json", "backup", "list").stdout)["bundles"]
    example = [r for r in rows if r["zone"] == "example.test"]
    assert sorted(r["role"] for r in example) == ["KSK", "ZSK"]
    for row in example:
        assert row["in_hsm"] == ["a", "b"] and len(row["in_enforcer"]) == 2 and row["origin"] == "a"


def test_backup_verify_restores_every_bundle_and_catches_damage(lab: Lab) -> None:
    result = json.loads(lab.duo("--json", "backup", "verify").stdout)
    assert result["ok"] is True and result["bundles"] >= 4, result
    bundles = lab.dir / "backup" / "bundles"
    victim = sorted(bundles.glob("*.json"))[0]
    original = victim.read_text()
    data = json.loads(original)
    wrapped = bytearray(base64.b64decode(data["wrapped"]))
    wrapped[-1] ^= 0x01  # one flipped bit: the KWP integrity check must catch it
    data["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    try:
        victim.write_text(json.dumps(data))
        proc = lab.duo("--json", "backup", "verify", check=False)
        result = json.loads(proc.stdout)
        assert proc.returncode == 1 and result["ok"] is False
        # recorded for the metrics exporter (ods_duo_backup_verify_ok)
        record = json.loads((lab.dir / "backup" / "state" / "last-verify.json").read_text())
        assert record["ok"] is False and record["problems"] == len(result["problems"])
        assert any(
            p.startswith(f"bundle {victim.stem} ") and "does not restore" in p for p in result["problems"]
        )
        victim.unlink()
        result = json.loads(lab.duo("--json", "backup", "verify", check=False).stdout)
        assert any(p.startswith(f"key {victim.stem} is used by ") for p in result["problems"]), result
    finally:
        victim.write_text(original)
        victim.chmod(0o600)
    started = time.time()
    assert json.loads(lab.duo("--json", "backup", "verify").stdout)["ok"] is True
    record = json.loads((lab.dir / "backup" / "state" / "last-verify.json").read_text())
    assert record["ok"] is True and record["problems"] == 0 and record["at"] >= started


def test_kek_replace_keeps_old_bundles_verifiable_and_new_keys_sealed(lab: Lab, tmp_path: Path) -> None:
    """A new KEK everywhere; the backup keeps the old one unwrap-only, so every bundle made before
    still verifies, and keys made after are sealed on every token."""
    before = json.loads(lab.duo("--json", "kek", "init", "--replace").stdout)
    assert before["replaced"] and before["retired"]
    verify = lab.duo("--json", "backup", "verify", check=False)
    assert verify.returncode == 0, verify.stdout
    _new_zone(lab, "afterkek.test", tmp_path)
    lab.duo("key", "create", "afterkek.test")
    report = json.loads(lab.duo("--json", "backup", "verify").stdout)
    assert report["ok"] and report["problems"] == []
    for node in ("a", "b"):
        custody = json.loads(lab.duo("node", "op", "hsm-custody", "--node", node).stdout)["result"]
        assert custody["problems"] == []
        keys = [o for o in custody["objects"] if o["object_class"] == "private" and o["role"] == "dnssec"]
        assert keys and all(o["extractable"] is False and o["sensitive"] is True for o in keys), keys


# Last in this module: it replaces the KEK in every token with one it knows, after which the
# bundles made earlier no longer open (as they should not).
def test_no_private_key_in_clear_anywhere(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant 2. The test plants a KEK it knows in every token, makes a key, opens its
    bundle in software, and searches every file of the lab (configs, databases, logs,
    backup) for the private key in any common encoding."""
    known = hashlib.sha256(b"test-only KEK " + os.urandom(16)).digest()
    holders = {n: Path(lab.node(n)["base_dir"]) for n in ("a", "b")} | {"backup": lab.dir / "backup"}
    labels = {"a": "DUO-LAB-A", "b": "DUO-LAB-B", "backup": "DUO-BACKUP"}
    for name, base in holders.items():
        monkeypatch.setenv("SOFTHSM2_CONF", str(base / "etc" / "softhsm2.conf"))
        pin = (base / "secrets" / "pin").read_text().strip()
        with open_session("/usr/lib/softhsm/libsofthsm2.so", labels[name], pin) as s:
            if has_kek(s, KEK):
                delete_kek(s, KEK)
            kek_by_value(s, KEK, known)
    _new_zone(lab, "clear.test", tmp_path)
    created = json.loads(lab.duo("--json", "key", "create", "clear.test").stdout)["keys"]
    bundles = [
        KeyBundle.from_json((lab.dir / "backup" / "bundles" / f"{k['locator']}.json").read_text())
        for k in created
    ]

    monkeypatch.setenv("SOFTHSM2_CONF", str(holders["a"] / "etc" / "softhsm2.conf"))
    pin = (holders["a"] / "secrets" / "pin").read_text().strip()
    secrets: list[bytes] = []
    with open_session("/usr/lib/softhsm/libsofthsm2.so", "DUO-LAB-A", pin) as s:
        oracle = s.create([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, False),
                           (CKA_DECRYPT, True), (CKA_VALUE, known)])  # fmt: skip
        for bundle in bundles:
            pkcs8 = software_kwp_unwrap(
                lambda block: s.decrypt(oracle, block, CKM_AES_ECB), bundle.wrapped_bytes
            )
            d = ec_private_scalar(pkcs8)
            # The bundle is the key node a's HSM holds (and the enforcers use).
            assert hsm_keys.dnskey_public(s, bundle.locator) == bundle.public_bytes
            secrets += [d, d.hex().encode(), d.hex().upper().encode(), base64.b64encode(d), pkcs8[:24]]
        s.destroy(oracle)
    searched = 0
    for path in lab.dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            searched += 1
            for secret in secrets:
                assert secret not in data, f"private key material in clear in {path}"
    assert searched > 20
