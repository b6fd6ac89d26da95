"""Pure encodings of the HSM layer: DER pieces, DNSKEY public key fields, locators."""

from __future__ import annotations

import pytest

from duo_ods.errors import HsmError
from duo_ods.hsm import der, keys
from duo_ods.hsm._p11 import CKA_EC_PARAMS, CKA_EC_POINT, CKK_EC, P11Failure, ckr_name


def test_der_lengths_and_integers() -> None:
    assert der.encode_length(0x7F) == b"\x7f"
    assert der.encode_length(0x80) == b"\x81\x80"
    assert der.encode_length(0x1234) == b"\x82\x12\x34"
    assert der.integer(0) == b"\x02\x01\x00"
    assert der.integer(0x80) == b"\x02\x02\x00\x80"  # sign bit kept clear
    blob = der.tlv(der.TAG_OCTET_STRING, bytes(300))
    assert der.read_single(blob, der.TAG_OCTET_STRING) == bytes(300)


def test_der_rejects_truncated_and_trailing_data() -> None:
    with pytest.raises(HsmError, match="runs past the end"):
        der.read_tlv(b"\x04\x05abc")
    with pytest.raises(HsmError, match="truncated"):
        der.read_tlv(b"\x04")
    with pytest.raises(HsmError, match="exactly one element"):
        der.read_single(b"\x04\x01a\x00", der.TAG_OCTET_STRING)


def test_rsa_spki_round_trip() -> None:
    modulus = (1 << 3071) | 12345
    spki = der.rsa_spki(modulus, 65537)
    assert spki.startswith(b"\x30\x82")
    assert der.parse_rsa_spki(spki) == (modulus, 65537)
    with pytest.raises(HsmError):
        der.parse_rsa_spki(spki[:-1])


def test_rsa_dnskey_field_rfc3110() -> None:
    modulus = b"\x00" + bytes(range(1, 129))  # leading zero is not part of the field
    field = keys._rsa_dnskey(modulus, b"\x01\x00\x01")
    assert field == b"\x03\x01\x00\x01" + modulus[1:]
    assert keys._parse_rsa_dnskey(field) == (b"\x01\x00\x01", modulus[1:])
    long_exponent = b"\x01" * 256
    field = keys._rsa_dnskey(b"\xff" * 128, long_exponent)
    assert field[:3] == b"\x00\x01\x00"
    assert keys._parse_rsa_dnskey(field) == (long_exponent, b"\xff" * 128)
    with pytest.raises(HsmError, match="truncated"):
        keys._parse_rsa_dnskey(b"\x03\x01\x00\x01")


def test_public_object_values_from_dnskey_fields() -> None:
    ec = keys.HsmKey("00" * 16, 13, 256)
    key_type, values = keys._public_values(ec, bytes(range(64)))
    assert dict(values)[CKA_EC_POINT] == b"\x04\x41\x04" + bytes(range(64))
    assert dict(values)[CKA_EC_PARAMS] == keys.OID_P256
    ed = keys.HsmKey("00" * 16, 15, 256)
    _, values = keys._public_values(ed, bytes(32))
    assert dict(values)[CKA_EC_POINT] == b"\x04\x20" + bytes(32)
    rsa = keys.HsmKey("00" * 16, 8, 1024)
    with pytest.raises(HsmError, match="not 1024 bits"):
        keys._public_values(rsa, b"\x03\x01\x00\x01" + b"\x7f" * 128)
    assert key_type == CKK_EC


def test_locators_are_32_lowercase_hex() -> None:
    assert keys.check_locator("0123456789abcdef" * 2) == bytes.fromhex("0123456789abcdef" * 2)
    for bad in ("0123456789ABCDEF" * 2, "00" * 15, "zz" * 16, ""):
        with pytest.raises(HsmError, match="32 lowercase hex"):
            keys.check_locator(bad)


def test_pkcs11_failures_name_operation_token_and_code() -> None:
    exc = P11Failure("C_UnwrapKey", "B", 0x40)  # CKR_ENCRYPTED_DATA_INVALID
    assert str(exc) == "C_UnwrapKey on token 'B' failed: CKR_ENCRYPTED_DATA_INVALID"
    assert isinstance(exc, HsmError)
    assert ckr_name(0x7FFFFFF0).startswith("CKR 0x")
