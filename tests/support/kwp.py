"""Test-only helpers that open a wrapped key bundle with a KEK whose value the test knows.

Used to prove invariant 2 (no private key in clear outside an HSM): only a test
that planted the KEK can open a blob, and then it knows what to search for.
"""

from __future__ import annotations

from collections.abc import Callable

from duo_ods.hsm import der
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_EXTRACTABLE,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_PRIVATE,
    CKA_SENSITIVE,
    CKA_TOKEN,
    CKA_UNWRAP,
    CKA_VALUE,
    CKA_WRAP,
    CKK_AES,
    CKO_SECRET_KEY,
    Session,
)


def kek_by_value(s: Session, label: str, value: bytes) -> None:
    s.create(
        [
            (CKA_CLASS, CKO_SECRET_KEY),
            (CKA_KEY_TYPE, CKK_AES),
            (CKA_LABEL, label),
            (CKA_TOKEN, True),
            (CKA_PRIVATE, True),
            (CKA_SENSITIVE, True),
            (CKA_EXTRACTABLE, False),
            (CKA_WRAP, True),
            (CKA_UNWRAP, True),
            (CKA_VALUE, value),
        ]
    )


def software_kwp_unwrap(aes_decrypt_block: Callable[[bytes], bytes], blob: bytes) -> bytes:
    """RFC 5649 unwrap written out here; the AES block decryption is the only outside part."""
    blocks = [blob[i : i + 8] for i in range(0, len(blob), 8)]
    n = len(blocks) - 1
    if n == 1:
        plain = aes_decrypt_block(blob)
        aiv, data = plain[:8], plain[8:]
    else:
        a, r = blocks[0], blocks[1:]
        for j in range(5, -1, -1):
            for i in range(n, 0, -1):
                t = (n * j + i).to_bytes(8, "big")
                b = aes_decrypt_block(bytes(x ^ y for x, y in zip(a, t, strict=True)) + r[i - 1])
                a, r[i - 1] = b[:8], b[8:]
        aiv, data = a, b"".join(r)
    assert aiv[:4] == bytes.fromhex("a65959a6"), "integrity check failed"
    mli = int.from_bytes(aiv[4:], "big")
    assert 8 * (n - 1) < mli <= 8 * n and data[mli:] == bytes(len(data) - mli)
    return data[:mli]


def ec_private_scalar(pkcs8: bytes) -> bytes:
    """d from PKCS#8 PrivateKeyInfo { version, algid, OCTET STRING { ECPrivateKey { 1, d, ... } } }."""
    _tag, body, end = der.read_tlv(pkcs8)  # SoftHSM zero-pads to 8: parse by the DER length
    assert pkcs8[end:] == bytes(len(pkcs8) - end)
    _t, _version, pos = der.read_tlv(body)
    _t, _algid, pos = der.read_tlv(body, pos)
    tag, inner, _ = der.read_tlv(body, pos)
    assert tag == der.TAG_OCTET_STRING
    _t, ec_key, _ = der.read_tlv(inner)
    _t, _one, pos = der.read_tlv(ec_key)
    tag, d, _ = der.read_tlv(ec_key, pos)
    assert tag == der.TAG_OCTET_STRING and len(d) == 32
    return d
