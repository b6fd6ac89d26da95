"""The HSM layer against a real SoftHSM2 (no mocks).

Tokens come from conftest.py (one token directory per module, see tokens.py).
SOFTHSM2_CONF is set before the first PKCS#11 call; the layer initialises the module per
outermost session and finalises it when the last one closes, so every test here (and any
later test with another conf) starts clean. The custody attacks are in test_custody.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from duo_ods.errors import HsmError
from duo_ods.hsm import der, kek, keys
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_DECRYPT,
    CKA_EC_PARAMS,
    CKA_ENCRYPT,
    CKA_EXTRACTABLE,
    CKA_ID,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_MODIFIABLE,
    CKA_PRIVATE,
    CKA_SENSITIVE,
    CKA_SIGN,
    CKA_TOKEN,
    CKA_UNWRAP,
    CKA_VALUE,
    CKK_AES,
    CKK_EC,
    CKM_AES_ECB,
    CKM_ECDSA,
    CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY,
    CKO_SECRET_KEY,
    Handle,
)
from duo_ods.hsm.token import list_tokens
from tests.integration.hsm.tokens import (
    KEK,
    MODULE,
    PIN,
    SO_PIN,
    TRANSPORT,
    Hsm,
    pin_transport_key,
    session,
    write_conf,
)
from tests.support.hsm import init_token, key_info
from tests.support.kwp import ec_private_scalar, kek_by_value, software_kwp_unwrap

pytestmark = pytest.mark.integration


# -- tokens -------------------------------------------------------------------------------------


def test_init_token_is_idempotent_and_refuses_a_foreign_token(hsm: Hsm) -> None:
    assert init_token(MODULE, "A", PIN, SO_PIN) == "exists"
    with pytest.raises(HsmError, match="PIN does not open it; refusing"):
        init_token(MODULE, "A", "wrong-pin", SO_PIN)
    labels = [t.label for t in list_tokens(MODULE)]
    assert sorted(labels) == ["A", "B", "BACKUP"]  # nothing re-initialised, nothing added


def test_token_label_is_blank_padded_for_opendnssec(hsm: Hsm) -> None:
    # libhsm compares the 32-byte blank-padded label; "A" + NUL + junk never matches.
    out = subprocess.run(
        ["softhsm2-util", "--show-slots"], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    labels = [line.split("Label:", 1)[1][1:] for line in out.splitlines() if "Label:" in line]
    assert "           A" + " " * 31 in labels


def test_open_session_unknown_token_and_nested_sessions(hsm: Hsm) -> None:
    with pytest.raises(HsmError, match="no token labelled 'nope'"), session("nope"):
        pass
    with session("A") as outer:
        with session("A") as inner:
            assert kek.has_kek(inner, KEK)
        # the inner block must not have logged the outer one out
        assert kek.has_kek(outer, KEK)


def test_softhsm_conf_cannot_change_under_an_open_session(
    hsm: Hsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = write_conf(tmp_path / "other")
    with session("A"):
        monkeypatch.setenv("SOFTHSM2_CONF", str(other.conf))
        with pytest.raises(HsmError, match="already initialised with"):
            list_tokens(MODULE)
    # once everything is closed the module is finalised and the other conf is honoured
    assert list_tokens(MODULE) == []
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    assert len(list_tokens(MODULE)) == 3


# -- KEK ------------------------------------------------------------------------------------------


def test_kek_reached_every_token_and_fingerprints_match(hsm: Hsm) -> None:
    with session("A") as a, session("B") as b, session("BACKUP") as bk:
        prints = {kek.kek_fingerprint(s, KEK) for s in (a, b, bk)}
        assert len(prints) == 1
        (fingerprint,) = prints
        assert len(fingerprint) == 32
        # a different KEK gives a different fingerprint
        kek.generate_kek(a, "scratch-kek")
        try:
            assert kek.kek_fingerprint(a, "scratch-kek") != fingerprint
        finally:
            assert kek.delete_kek(a, "scratch-kek")
        # the KEK is sensitive, wrap/unwrap only, and refuses a second one under its label
        (handle,) = a.find([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, KEK)])
        assert a.get_bool(handle, CKA_SENSITIVE) is True
        assert a.get_bool(handle, CKA_ENCRYPT) is False
        assert a.get_bytes(handle, CKA_VALUE) is None
        with pytest.raises(HsmError, match="already has a KEK"):
            kek.generate_kek(a, KEK)
        # the node copies are sealed from birth; the holder's stays extractable (to trusted keys
        # only) and cannot be changed (not modifiable)
        assert a.get_bool(handle, CKA_EXTRACTABLE) is False
        (held,) = bk.find([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, KEK)])
        assert bk.get_bool(held, CKA_EXTRACTABLE) is True
        assert bk.get_bool(held, CKA_MODIFIABLE) is False
        # a node cannot pass its KEK on, not even to the holder's (untrusted here) transport key
        spki = kek.make_transport_key(b, "scratch-transport")
        try:
            with pytest.raises(HsmError, match="has not pinned it as trusted"):
                kek.wrap_kek_for(a, KEK, spki)
        finally:
            kek.delete_transport_key(b, "scratch-transport")


def test_transport_key_is_unwrap_only_and_spki_is_standard(hsm: Hsm) -> None:
    with session("B") as b:
        spki = kek.make_transport_key(b, TRANSPORT)
        try:
            assert kek.make_transport_key(b, TRANSPORT) == spki  # existing key: returned, not remade
            modulus, exponent = der.parse_rsa_spki(spki)
            assert modulus.bit_length() == 3072
            assert exponent == 65537
            (private,) = b.find([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, TRANSPORT)])
            assert b.get_bool(private, CKA_UNWRAP) is True
            assert b.get_bool(private, CKA_DECRYPT) is False
            assert b.get_bool(private, CKA_EXTRACTABLE) is False
            # not an ODS-style key (label is not the hex CKA_ID): list_keys leaves it out
            cka_id = b.get_bytes(private, CKA_ID)
            assert cka_id is not None and len(cka_id) == 16  # ods-hsmutil list needs one
            assert cka_id.hex() not in {k.locator for k in keys.list_keys(b)}
        finally:
            kek.delete_transport_key(b, TRANSPORT)
    with pytest.raises(HsmError, match="not an rsaEncryption"):
        der.parse_rsa_spki(der.tlv(0x30, der.tlv(0x30, b"") + der.tlv(0x03, b"\x00")))


def test_kek_unwrap_with_the_wrong_transport_key_fails(hsm: Hsm) -> None:
    trusted = pin_transport_key("B", transport="b-transport")
    with session("A") as a, session("B") as b, session("BACKUP") as bk:
        kek.make_transport_key(a, "a-transport")
        try:
            blob = kek.wrap_kek_to_trusted(bk, KEK, trusted)
            with pytest.raises(HsmError, match=r"unwrap KEK 'kek-2'.*on token 'A' failed: CKR_"):
                kek.unwrap_kek(a, blob, "a-transport", "kek-2")
            assert not kek.has_kek(a, "kek-2")
        finally:
            assert kek.delete_transport_key(a, "a-transport") == 2
            assert kek.delete_transport_key(b, "b-transport") == 2
            assert kek.delete_trusted_transport_key(bk, trusted) == 1


# -- keys: generate, wrap, unwrap, sign -------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "bits"), [(13, 256), (8, 2048)])
def test_key_made_in_a_signs_in_b_and_verifies_in_a(hsm: Hsm, algorithm: int, bits: int) -> None:
    with session("A") as a, session("B") as b, session("BACKUP") as bk:
        key = keys.generate_keypair(a, algorithm)
        try:
            assert key.bits == bits
            assert len(key.locator) == 32
            assert key_info(a, key.locator) == key
            public = keys.dnskey_public(a, key.locator)
            blob = keys.wrap_private(a, key.locator, KEK)
            assert keys.unwrap_private(b, blob, KEK, key, public) is True
            assert keys.unwrap_private(bk, blob, KEK, key, public) is True
            assert keys.unwrap_private(b, blob, KEK, key, public) is False  # already there

            assert keys.dnskey_public(b, key.locator) == public
            assert key_info(b, key.locator) == key
            message = b"example. 3600 IN SOA ... signed data"
            signature = keys.sign(b, key, message)
            assert keys.verify(a, key, message, signature)
            assert not keys.verify(a, key, message + b"x", signature)
            assert keys.verify(b, key, message, keys.sign(a, key, message))

            # B's copy is ODS-shaped: same label/ID, private + public, sensitive, sealed
            objects = [k for k in keys.list_keys(b) if k.locator == key.locator]
            assert [(o.object_class, o.extractable) for o in objects] == [
                ("private", False),
                ("public", None),
            ]
            (private,) = b.find([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, key.locator)])
            assert b.get_bool(private, CKA_SENSITIVE) is True
            assert b.get_bool(private, CKA_PRIVATE) is True
            assert b.get_bool(private, CKA_SIGN) is True
            assert b.get_bytes(private, CKA_VALUE) is None
        finally:
            for s in (a, b, bk):
                keys.delete_key(s, key.locator)


def test_algorithm_15_works_or_is_refused_up_front(hsm: Hsm) -> None:
    with session("A") as a, session("B") as b:
        before = keys.list_keys(a)
        try:
            key = keys.generate_keypair(a, 15)
        except HsmError as exc:
            # SoftHSM 2.6.1: EdDSA keys can be made but C_WrapKey cannot export them
            assert "algorithm 15 (Ed25519) is not supported by this HSM" in str(exc)
            assert keys.list_keys(a) == before  # refused before anything was made
            assert keys.can_wrap(a, 15) is False
            if {"CKM_EC_EDWARDS_KEY_PAIR_GEN", "CKM_EDDSA"} <= a.mechanisms:
                # a local, non-shareable Ed25519 key is still possible and ODS-shaped
                local = keys.generate_keypair(a, 15, extractable=False)
                try:
                    assert len(keys.dnskey_public(a, local.locator)) == 32
                    assert key_info(a, local.locator) == local
                    sig = keys.sign(a, local, b"data")
                    assert len(sig) == 64
                    assert keys.verify(a, local, b"data", sig)
                finally:
                    keys.delete_key(a, local.locator)
            return
        try:
            public = keys.dnskey_public(a, key.locator)
            assert len(public) == 32
            keys.unwrap_private(b, keys.wrap_private(a, key.locator, KEK), KEK, key, public)
            assert keys.verify(a, key, b"data", keys.sign(b, key, b"data"))
        finally:
            keys.delete_key(a, key.locator)
            keys.delete_key(b, key.locator)


def test_unwrap_with_the_wrong_kek_leaves_nothing(hsm: Hsm) -> None:
    with session("A") as a, session("B") as b:
        key = keys.generate_keypair(a, 13)
        kek.generate_kek(b, "wrong-kek")
        try:
            public = keys.dnskey_public(a, key.locator)
            blob = keys.wrap_private(a, key.locator, KEK)
            before = keys.list_keys(b)
            with pytest.raises(HsmError, match=rf"unwrap key {key.locator} .*on token 'B' failed: CKR_\w+"):
                keys.unwrap_private(b, blob, "wrong-kek", key, public)
            assert keys.list_keys(b) == before
            assert not keys.has_key(b, key.locator)
            # a tampered blob fails the same way
            tampered = blob[:-1] + bytes([blob[-1] ^ 1])
            with pytest.raises(HsmError, match="CKR_"):
                keys.unwrap_private(b, tampered, KEK, key, public)
            assert keys.list_keys(b) == before
        finally:
            kek.delete_kek(b, "wrong-kek")
            keys.delete_key(a, key.locator)


def test_unwrap_with_a_foreign_public_key_undoes_the_private_key(hsm: Hsm) -> None:
    with session("A") as a, session("B") as b:
        key = keys.generate_keypair(a, 13)
        other = keys.generate_keypair(a, 13)
        try:
            blob = keys.wrap_private(a, key.locator, KEK)
            before = keys.list_keys(b)
            # the private key unwraps fine, the public object is created, the pair check fails
            with pytest.raises(HsmError, match="does not match the public key"):
                keys.unwrap_private(b, blob, KEK, key, keys.dnskey_public(a, other.locator))
            assert keys.list_keys(b) == before
            # a public key of the wrong size is refused before anything is made
            with pytest.raises(HsmError, match="is 63 bytes, not 64"):
                keys.unwrap_private(b, blob, KEK, key, bytes(63))
            assert keys.list_keys(b) == before
            # a locator clash with a different key is an error, not an overwrite
            keys.unwrap_private(b, blob, KEK, key, keys.dnskey_public(a, key.locator))
            with pytest.raises(HsmError, match="holds a different key"):
                keys.unwrap_private(b, blob, KEK, key, keys.dnskey_public(a, other.locator))
        finally:
            for locator in (key.locator, other.locator):
                keys.delete_key(a, locator)
                keys.delete_key(b, locator)


def test_a_half_copied_key_is_reported_not_patched(hsm: Hsm) -> None:
    with session("A") as a, session("B") as b:
        key = keys.generate_keypair(a, 13)
        try:
            public = keys.dnskey_public(a, key.locator)
            blob = keys.wrap_private(a, key.locator, KEK)
            keys.unwrap_private(b, blob, KEK, key, public)
            (pub,) = b.find([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, key.locator)])
            b.destroy(pub)  # as if the copy had died between the two objects
            with pytest.raises(HsmError, match="private key without its public key object"):
                keys.unwrap_private(b, blob, KEK, key, public)
            assert keys.delete_key(b, key.locator) == 1
            assert keys.unwrap_private(b, blob, KEK, key, public) is True
        finally:
            keys.delete_key(a, key.locator)
            keys.delete_key(b, key.locator)


def test_an_indexed_session_sees_what_it_makes_and_deletes(hsm: Hsm) -> None:
    """keys.index_objects: a batch reads the token once; the keys module keeps the index current."""
    with session("A") as a, session("B") as b:
        first = keys.generate_keypair(a, 13)  # made before the index: read into it
        try:
            keys.index_objects(a)
            keys.index_objects(b)
            locator = "ab" * 16
            made = keys.generate_keypair(a, 13, locator=locator)
            with pytest.raises(HsmError, match="already"):
                keys.generate_keypair(a, 13, locator=locator)  # the index knows the new key
            assert keys.has_key(a, first.locator) and keys.has_key(a, locator)
            public = keys.dnskey_public(a, locator)
            blob = keys.wrap_private(a, locator, KEK)  # the KEK by label, from the index
            assert keys.unwrap_private(b, blob, KEK, made, public) is True
            assert keys.unwrap_private(b, blob, KEK, made, public) is False  # the index has the copy
            assert keys.seal_key(a, locator) is True and keys.is_sealed(b, locator)
            assert keys.delete_key(b, locator) == 2
            assert not keys.has_key(b, locator)
            assert keys.unwrap_private(b, blob, KEK, made, public) is True  # copied again after delete
            # What the index says is what a find in the token says.
            for s in (a, b):
                assert s.index is not None
                for object_class in (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY):
                    for loc in (first.locator, locator):
                        cka_id = bytes.fromhex(loc)
                        found = s.find([(CKA_CLASS, object_class), (CKA_ID, cka_id)])
                        assert len(keys._find_all(s, object_class, cka_id)) == len(found)
        finally:
            for s in (a, b):
                s.index = None
                keys.delete_key(s, first.locator)
                keys.delete_key(s, "ab" * 16)


def test_delete_removes_both_objects(hsm: Hsm) -> None:
    with session("A") as a:
        key = keys.generate_keypair(a, 13)
        assert keys.has_key(a, key.locator)
        assert [k.object_class for k in keys.list_keys(a) if k.locator == key.locator] == [
            "private",
            "public",
        ]
        assert keys.delete_key(a, key.locator) == 2
        assert not keys.has_key(a, key.locator)
        assert [k for k in keys.list_keys(a) if k.locator == key.locator] == []
        assert keys.delete_key(a, key.locator) == 0
        with pytest.raises(HsmError, match="not in token 'A'"):
            keys.wrap_private(a, key.locator, KEK)


def test_bad_arguments_are_refused_clearly(hsm: Hsm) -> None:
    with session("A") as a:
        with pytest.raises(HsmError, match="algorithm 7 is not supported"):
            keys.generate_keypair(a, 7)
        with pytest.raises(HsmError, match="keys are 256 bits, not 384"):
            keys.generate_keypair(a, 13, 384)
        with pytest.raises(HsmError, match=r"outside 1024\.\.4096"):
            keys.generate_keypair(a, 8, 512)
        with pytest.raises(HsmError, match="32 lowercase hex"):
            keys.has_key(a, "ABC")
        key = keys.generate_keypair(a, 13)
        try:
            with pytest.raises(HsmError, match="no secret key labelled 'missing'"):
                keys.wrap_private(a, key.locator, "missing")
        finally:
            keys.delete_key(a, key.locator)


# -- invariant 2: only KEK-wrapped blobs leave a token -------------------------------------------


def test_wrapped_blob_is_the_key_under_the_kek_and_nothing_in_clear(hsm: Hsm) -> None:
    """A KEK imported from a value the test knows lets the test open the blob itself.

    Shows: the blob is exactly KWP(KEK, PKCS#8 of the key); the private scalar is not in
    the blob; the scalar really is the key (a token object made from it signs, and A's
    public key verifies); the blob unwrapped in B makes a key whose signatures A verifies.
    """
    known = hashlib.sha256(b"test-only KEK value " + os.urandom(16)).digest()
    with session("A") as a, session("B") as b:
        kek_by_value(a, "known-kek", known)
        kek_by_value(b, "known-kek", known)
        key = keys.generate_keypair(a, 13)
        scratch: list[Handle] = []
        try:
            assert kek.kek_fingerprint(a, "known-kek") == kek.kek_fingerprint(b, "known-kek")
            blob = keys.wrap_private(a, key.locator, "known-kek")
            public = keys.dnskey_public(a, key.locator)

            # AES block decryption with the known value (a session object made for the test)
            oracle = a.create(
                [
                    (CKA_CLASS, CKO_SECRET_KEY),
                    (CKA_KEY_TYPE, CKK_AES),
                    (CKA_TOKEN, False),
                    (CKA_DECRYPT, True),
                    (CKA_VALUE, known),
                ]
            )
            scratch.append(oracle)
            pkcs8 = software_kwp_unwrap(lambda block: a.decrypt(oracle, block, CKM_AES_ECB), blob)
            d = ec_private_scalar(pkcs8)
            assert d not in blob
            assert pkcs8[:16] not in blob
            assert public not in blob  # no part of the clear key material shows through

            # the scalar is the real private key: a key made from it verifies under A's public key
            clear = a.create(
                [
                    (CKA_CLASS, CKO_PRIVATE_KEY),
                    (CKA_KEY_TYPE, CKK_EC),
                    (CKA_TOKEN, False),
                    (CKA_SIGN, True),
                    (CKA_EC_PARAMS, keys.OID_P256),
                    (CKA_VALUE, d),
                ]
            )
            scratch.append(clear)
            digest = hashlib.sha256(b"proof").digest()
            sig = a.sign(clear, digest, CKM_ECDSA)
            assert keys.verify(a, key, b"proof", sig)

            # and the blob itself moves the key into B
            assert keys.unwrap_private(b, blob, "known-kek", key, public)
            assert keys.verify(a, key, b"zone data", keys.sign(b, key, b"zone data"))
        finally:
            for handle in scratch:
                a.destroy(handle)
            for s in (a, b):
                keys.delete_key(s, key.locator)
                kek.delete_kek(s, "known-kek")


# -- OpenDNSSEC reads what this layer made ------------------------------------------------------


def _hsmutil(conf: Path, *args: str) -> str:
    return subprocess.run(
        ["ods-hsmutil", "-c", str(conf), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


@pytest.mark.skipif(shutil.which("ods-hsmutil") is None, reason="OpenDNSSEC not installed")
def test_opendnssec_libhsm_finds_the_copied_keys(hsm: Hsm, tmp_path: Path) -> None:
    """ods-hsmutil (libhsm, as the enforcer and signer use it) on token B: list + dnskey."""
    conf = tmp_path / "conf.xml"
    conf.write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <RepositoryList>
    <Repository name="RB">
      <Module>{MODULE}</Module>
      <TokenLabel>B</TokenLabel>
      <PIN>{PIN}</PIN>
    </Repository>
  </RepositoryList>
  <Common>
    <Logging><Verbosity>3</Verbosity></Logging>
    <PolicyFile>{tmp_path}/kasp.xml</PolicyFile>
    <ZoneListFile>{tmp_path}/zonelist.xml</ZoneListFile>
  </Common>
  <Enforcer><Datastore><SQLite>{tmp_path}/kasp.db</SQLite></Datastore></Enforcer>
  <Signer><WorkingDirectory>{tmp_path}</WorkingDirectory></Signer>
</Configuration>
"""
    )
    made: list[keys.HsmKey] = []
    with session("A") as a, session("B") as b:
        try:
            for algorithm in (13, 8):
                key = keys.generate_keypair(a, algorithm)
                made.append(key)
                public = keys.dnskey_public(a, key.locator)
                keys.unwrap_private(b, keys.wrap_private(a, key.locator, KEK), KEK, key, public)
            listing = _hsmutil(conf, "list", "RB")
            assert f"{made[0].locator}  ECDSA/256" in listing
            assert f"{made[1].locator}  RSA/2048" in listing
            for key in made:
                line = _hsmutil(conf, "dnskey", key.locator, "example.", "257", str(key.algorithm))
                fields = line.split(";")[0].split()
                assert fields[3:7] == ["DNSKEY", "257", "3", str(key.algorithm)]
                assert base64.b64decode("".join(fields[7:])) == keys.dnskey_public(a, key.locator)
        finally:
            for key in made:
                keys.delete_key(a, key.locator)
                keys.delete_key(b, key.locator)
