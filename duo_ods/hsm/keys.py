"""DNSSEC key pairs in a token, made and named the way OpenDNSSEC 2.1 makes them.

Matches libhsm (hsm_generate_rsa_key / hsm_generate_ecdsa_key / hsm_generate_eddsa_key
in OpenDNSSEC 2.1.12): CKA_ID is 16 random bytes, CKA_LABEL the same bytes as 32
lowercase hex (the "locator" the enforcer stores), both objects are token objects,
private key CKA_PRIVATE + CKA_SENSITIVE + CKA_SIGN (no DECRYPT/UNWRAP), public key
CKA_VERIFY (no ENCRYPT/WRAP). ODS finds a key by CKO_PRIVATE_KEY + CKA_ID and then
the CKO_PUBLIC_KEY with the same CKA_ID, from which it reads the DNSKEY (for ECDSA
and EdDSA it needs the public object: the private one has no point).

Custody (DESIGN invariant 2; docs/security.md): the token enforces it, not only this code.
- A key made here (the origin's copy) is CKA_SENSITIVE and CKA_EXTRACTABLE only for the copy
  window: until the peers and the backup confirmed their copies, then `seal_key` turns
  CKA_EXTRACTABLE off for good (PKCS#11 allows true -> false only). Within the window anyone
  with the user PIN could wrap it under a key of their own: `wrap_private(..., seal=True)`
  closes the window at the wrap itself.
- A copy unwrapped here (peer, backup) is sensitive, never extractable, not copyable and not
  modifiable from birth. The KEK's CKA_UNWRAP_TEMPLATE makes the token insist on that.
- Every key is CKA_COPYABLE false (C_CopyObject refused) and CKA_DERIVE false.
SoftHSM 2.6.1 refuses CKA_WRAP_WITH_TRUSTED after creation and CKA_TRUSTED on anything but
an SO-made public object, so a DNSSEC key cannot be limited to "wrap under the KEK only":
the copy window above is the residual risk (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Literal

from duo_ods.errors import HsmError
from duo_ods.hsm import der
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_COPYABLE,
    CKA_DECRYPT,
    CKA_DERIVE,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_ENCRYPT,
    CKA_EXTRACTABLE,
    CKA_ID,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_MODIFIABLE,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PRIVATE,
    CKA_PUBLIC_EXPONENT,
    CKA_SENSITIVE,
    CKA_SIGN,
    CKA_TOKEN,
    CKA_UNWRAP,
    CKA_VALUE_LEN,
    CKA_VERIFY,
    CKA_WRAP,
    CKK_AES,
    CKK_EC,
    CKK_EC_EDWARDS,
    CKK_RSA,
    CKM_AES_KEY_GEN,
    CKM_AES_KEY_WRAP_PAD,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_EC_KEY_PAIR_GEN,
    CKM_ECDSA,
    CKM_EDDSA,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_SHA256_RSA_PKCS,
    CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY,
    CKO_SECRET_KEY,
    CKR_KEY_NOT_WRAPPABLE,
    AttrValue,
    Handle,
    Mechanism,
    ObjectIndex,
    P11Failure,
    Session,
    doing,
)

log = logging.getLogger(__name__)

ALG_RSASHA256 = 8
ALG_ECDSAP256SHA256 = 13
ALG_ECDSAP384SHA384 = 14
ALG_ED25519 = 15

RSA_DEFAULT_BITS = 2048
RSA_MIN_BITS = 1024
RSA_MAX_BITS = 4096
RSA_EXPONENT = 65537
ID_BYTES = 16

# Named-curve OIDs, DER encoded, exactly as libhsm puts them in CKA_EC_PARAMS.
OID_P256 = bytes.fromhex("06082a8648ce3d030107")
OID_P384 = bytes.fromhex("06052b81040022")
OID_ED25519 = bytes.fromhex("06032b6570")
# SoftHSM 2.6.1 reports a generated Ed25519 private key's CKA_EC_PARAMS as this curve name.
NAME_ED25519 = der.tlv(0x13, b"edwards25519")

# DNSSEC algorithm -> (CKA_EC_PARAMS, bits, public key size in DNSKEY) for the curve algorithms.
_CURVES: dict[int, tuple[bytes, int, int]] = {
    ALG_ECDSAP256SHA256: (OID_P256, 256, 64),
    ALG_ECDSAP384SHA384: (OID_P384, 384, 96),
    ALG_ED25519: (OID_ED25519, 256, 32),
}
SUPPORTED_ALGORITHMS = (ALG_RSASHA256, *_CURVES)

_LOCATOR = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class HsmKey:
    """A key pair in a token: what a key bundle records besides the wrapped blob.

    `bits` is what `ods-enforcer key import --bits` and the policy use: the modulus
    size for RSA, 256/384 for ECDSA, 256 for Ed25519.
    """

    locator: str
    algorithm: int
    bits: int

    @property
    def cka_id(self) -> bytes:
        return bytes.fromhex(self.locator)


@dataclass(frozen=True)
class KeyObject:
    """One ODS-style key object (CKA_LABEL is the hex of its 16-byte CKA_ID)."""

    locator: str
    object_class: Literal["private", "public"]
    key_type: Literal["RSA", "EC", "EC_EDWARDS", "other"]
    extractable: bool | None  # None for public keys: PKCS#11 defines it for private/secret keys


def check_locator(locator: str) -> bytes:
    """The CKA_ID of a locator; HsmError unless it is 32 lowercase hex digits."""
    if not _LOCATOR.fullmatch(locator):
        raise HsmError(f"locator {locator!r}: expected 32 lowercase hex digits (a 16-byte CKA_ID)")
    return bytes.fromhex(locator)


def _check_algorithm(algorithm: int, bits: int | None) -> int:
    if algorithm == ALG_RSASHA256:
        size = RSA_DEFAULT_BITS if bits is None else bits
        if not RSA_MIN_BITS <= size <= RSA_MAX_BITS:
            raise HsmError(f"algorithm 8 (RSASHA256): {size} bits is outside {RSA_MIN_BITS}..{RSA_MAX_BITS}")
        return size
    if algorithm in _CURVES:
        size = _CURVES[algorithm][1]
        if bits is not None and bits != size:
            raise HsmError(f"algorithm {algorithm}: keys are {size} bits, not {bits}")
        return size
    supported = ", ".join(str(a) for a in SUPPORTED_ALGORITHMS)
    raise HsmError(f"DNSSEC algorithm {algorithm} is not supported (supported: {supported})")


def _keygen(algorithm: int, bits: int) -> tuple[int, int, list[tuple[int, AttrValue]]]:
    """Key pair mechanism, CKK_ type and the public template's key parameters."""
    if algorithm == ALG_RSASHA256:
        exponent = RSA_EXPONENT.to_bytes(3, "big")
        return CKM_RSA_PKCS_KEY_PAIR_GEN, CKK_RSA, [(CKA_MODULUS_BITS, bits), (CKA_PUBLIC_EXPONENT, exponent)]
    params: list[tuple[int, AttrValue]] = [(CKA_EC_PARAMS, _CURVES[algorithm][0])]
    if algorithm == ALG_ED25519:
        return CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS, params
    return CKM_EC_KEY_PAIR_GEN, CKK_EC, params


def _require_ed25519(session: Session, *, wrappable: bool) -> None:
    needed = {"CKM_EC_EDWARDS_KEY_PAIR_GEN", "CKM_EDDSA"}
    if not needed <= session.mechanisms:
        raise HsmError(f"algorithm 15 (Ed25519) is not supported by this HSM (token {session.token!r})")
    if wrappable and not can_wrap(session, ALG_ED25519):
        # SoftHSM before 2.7.0 has no PKCS#8 export for EdDSA keys: the key could
        # be made but never shared with the peer or the backup store.
        raise HsmError(
            f"algorithm 15 (Ed25519) is not supported by this HSM for shared keys: token "
            f"{session.token!r} cannot wrap Ed25519 private keys (C_WrapKey: CKR_KEY_NOT_WRAPPABLE)"
        )


def can_wrap(session: Session, algorithm: int) -> bool:
    """Whether the token can wrap a private key of this algorithm under an AES KEK (KWP).

    Probed for real with throw-away session objects (RSA at 1024 bits to stay quick),
    because the mechanism list does not say which key types C_WrapKey can export.
    """
    _check_algorithm(algorithm, None)
    probe = f"wrap-{algorithm}"
    if probe in session.probes:
        return session.probes[probe]
    mechanism, key_type, extra = _keygen(algorithm, RSA_MIN_BITS)
    made: list[Handle] = []
    try:
        with doing(f"probe wrapping of algorithm {algorithm} keys"):
            public, private = session.generate_key_pair(
                mechanism,
                [(CKA_TOKEN, False), (CKA_KEY_TYPE, key_type), (CKA_VERIFY, True), *extra],
                [
                    (CKA_TOKEN, False),
                    (CKA_KEY_TYPE, key_type),
                    (CKA_SIGN, True),
                    (CKA_SENSITIVE, True),
                    (CKA_EXTRACTABLE, True),
                ],
            )
            made += [public, private]
            kek = session.generate_key(
                CKM_AES_KEY_GEN,
                [
                    (CKA_CLASS, CKO_SECRET_KEY),
                    (CKA_KEY_TYPE, CKK_AES),
                    (CKA_TOKEN, False),
                    (CKA_VALUE_LEN, 32),
                    (CKA_WRAP, True),
                    (CKA_SENSITIVE, True),
                ],
            )
            made.append(kek)
            try:
                session.wrap(kek, private, Mechanism.plain(CKM_AES_KEY_WRAP_PAD))
                result = True
            except P11Failure as exc:
                if exc.code != CKR_KEY_NOT_WRAPPABLE:
                    raise
                result = False
    finally:
        _destroy_all(session, "(probe)", made)
    session.probes[probe] = result
    log.debug("token %s can wrap algorithm %d keys: %s", session.token, algorithm, result)
    return result


def index_objects(session: Session) -> None:
    """Read the token's key objects once, for a batch of key work in this session.

    Why: SoftHSM 2.6's file store opens every object's file on each C_FindObjects, so a find
    costs time in proportion to the objects in the token (29 us each, measured: 12 ms at 400
    objects). A batch of keys with a find per key and step grew with the token, quadratically
    over an onboarding; with the index, a batch reads the token once. Remove when the token's
    find no longer scans (a real HSM, or SoftHSM's sqlite store where it is built in).
    """
    by_id: dict[tuple[int, bytes], list[Handle]] = {}
    for object_class in (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY):
        for handle in session.find([(CKA_CLASS, object_class)]):
            cka_id = session.get_bytes(handle, CKA_ID) or b""
            by_id.setdefault((object_class, cka_id), []).append(handle)
    secret: dict[str, list[Handle]] = {}
    for handle in session.find([(CKA_CLASS, CKO_SECRET_KEY)]):
        label = (session.get_bytes(handle, CKA_LABEL) or b"").decode(errors="replace")
        secret.setdefault(label, []).append(handle)
    session.index = ObjectIndex(by_id, secret)


def _indexed(session: Session, object_class: int, cka_id: bytes, handle: Handle) -> None:
    if session.index is not None:
        session.index.by_id.setdefault((object_class, cka_id), []).append(handle)


def _unindexed(session: Session, handle: Handle) -> None:
    if session.index is not None:
        for handles in session.index.by_id.values():
            if handle in handles:
                handles.remove(handle)


def _find_all(session: Session, object_class: int, cka_id: bytes) -> list[Handle]:
    if session.index is not None:
        return list(session.index.by_id.get((object_class, cka_id), []))
    return session.find([(CKA_CLASS, object_class), (CKA_ID, cka_id)])


def _find_one(session: Session, object_class: int, cka_id: bytes) -> Handle | None:
    found = _find_all(session, object_class, cka_id)
    if len(found) > 1:
        raise HsmError(
            f"token {session.token!r} holds {len(found)} objects of one class with CKA_ID {cka_id.hex()}"
        )
    return found[0] if found else None


def _id_taken(session: Session, cka_id: bytes) -> bool:
    if session.index is not None:  # the index holds key pairs only: their CKA_IDs are what can clash
        return bool(_find_all(session, CKO_PRIVATE_KEY, cka_id) or _find_all(session, CKO_PUBLIC_KEY, cka_id))
    return bool(session.find([(CKA_ID, cka_id)]))


def _new_id(session: Session) -> bytes:
    # Like libhsm's generate_unique_id: HSM randomness, retried on the (unlikely) clash.
    while True:
        cka_id = session.random(ID_BYTES)
        if not session.find([(CKA_ID, cka_id)]):
            return cka_id


def _private_template(key_type: int, cka_id: bytes, *, extractable: bool) -> list[tuple[int, AttrValue]]:
    """A DNSSEC private key as made here (extractable: the copy window) or unwrapped here (sealed).

    The sealed form ends with CKA_MODIFIABLE false, last on purpose: SoftHSM 2.6.1 applies an
    unwrap template in order and refuses (CKR_ATTRIBUTE_READ_ONLY) every attribute after it.
    It also matches the KEK's CKA_UNWRAP_TEMPLATE (kek.UNWRAP_TEMPLATE).
    """
    template: list[tuple[int, AttrValue]] = [
        (CKA_CLASS, CKO_PRIVATE_KEY),
        (CKA_LABEL, cka_id.hex()),
        (CKA_ID, cka_id),
        (CKA_KEY_TYPE, key_type),
        (CKA_SIGN, True),
        (CKA_DECRYPT, False),
        (CKA_UNWRAP, False),
        (CKA_DERIVE, False),
        (CKA_SENSITIVE, True),
        (CKA_TOKEN, True),
        (CKA_PRIVATE, True),
        (CKA_EXTRACTABLE, extractable),
        (CKA_COPYABLE, False),
    ]
    if not extractable:
        # Nothing is left to change on a sealed key; an extractable one must stay modifiable
        # so that seal_key can turn CKA_EXTRACTABLE off.
        template.append((CKA_MODIFIABLE, False))
    return template


def _public_template(key_type: int, cka_id: bytes) -> list[tuple[int, AttrValue]]:
    return [
        (CKA_CLASS, CKO_PUBLIC_KEY),
        (CKA_LABEL, cka_id.hex()),
        (CKA_ID, cka_id),
        (CKA_KEY_TYPE, key_type),
        (CKA_VERIFY, True),
        (CKA_ENCRYPT, False),
        (CKA_WRAP, False),
        (CKA_DERIVE, False),
        (CKA_TOKEN, True),
        (CKA_COPYABLE, False),
    ]


def generate_keypair(
    session: Session,
    algorithm: int,
    bits: int | None = None,
    *,
    extractable: bool = True,
    locator: str | None = None,
) -> HsmKey:
    """Make a DNSSEC key pair in the token, ODS style; `bits` only matters for RSA (default 2048).

    With `extractable` (the default) the private key can be wrapped until `seal_key`; without,
    it is a local key that never leaves this token.

    `locator` (its CKA_ID in hex) may be chosen by the caller, who then can record it before
    the key exists; a CKA_ID the token already has is refused.
    """
    size = _check_algorithm(algorithm, bits)
    if algorithm == ALG_ED25519:
        _require_ed25519(session, wrappable=extractable)
    cka_id = _new_id(session) if locator is None else check_locator(locator)
    if locator is not None and _id_taken(session, cka_id):
        raise HsmError(f"token {session.token} holds a key with CKA_ID {locator} already")
    locator = cka_id.hex()
    mechanism, key_type, extra = _keygen(algorithm, size)
    public = _public_template(key_type, cka_id)[1:] + extra  # libhsm leaves CKA_CLASS implied
    private = _private_template(key_type, cka_id, extractable=extractable)[1:]
    with doing(f"generate algorithm {algorithm} key"):
        public_handle, private_handle = session.generate_key_pair(mechanism, public, private)
    _indexed(session, CKO_PUBLIC_KEY, cka_id, public_handle)
    _indexed(session, CKO_PRIVATE_KEY, cka_id, private_handle)
    log.info("generated algorithm %d key %s (%d bits) in token %s", algorithm, locator, size, session.token)
    return HsmKey(locator=locator, algorithm=algorithm, bits=size)


def seal_key(session: Session, locator: str) -> bool:
    """Turn CKA_EXTRACTABLE off on the key's private object for good, and check it took.

    Call on every node once the peers and the backup confirmed their copies (it is a no-op on
    a copy that was unwrapped sealed). Returns True when this call sealed it, False when it
    was sealed already. HsmError when the key is missing or the token did not seal it.
    """
    private = _find_one(session, CKO_PRIVATE_KEY, check_locator(locator))
    if private is None:
        raise HsmError(f"key {locator} is not in token {session.token!r}")
    if session.get_bool(private, CKA_EXTRACTABLE) is False:
        return False
    with doing(f"seal key {locator}"):
        session.set_attributes(private, [(CKA_EXTRACTABLE, False)])
    # Read it back: the token, not our call, says whether the key can still leave.
    if session.get_bool(private, CKA_EXTRACTABLE) is not False:
        raise HsmError(f"key {locator}: token {session.token!r} still reports it extractable after sealing")
    log.info("sealed key %s in token %s", locator, session.token)
    return True


def is_sealed(session: Session, locator: str) -> bool:
    """Whether the key's private object can no longer be wrapped (CKA_EXTRACTABLE false)."""
    private = _find_one(session, CKO_PRIVATE_KEY, check_locator(locator))
    if private is None:
        raise HsmError(f"key {locator} is not in token {session.token!r}")
    return session.get_bool(private, CKA_EXTRACTABLE) is False


def has_key(session: Session, locator: str) -> bool:
    """Whether the token holds the private key ODS would find for this locator."""
    return _find_one(session, CKO_PRIVATE_KEY, check_locator(locator)) is not None


def _strip_zeros(data: bytes) -> bytes:
    return data.lstrip(b"\x00") or b"\x00"


def _rsa_dnskey(modulus: bytes, exponent: bytes) -> bytes:
    # RFC 3110 section 2: exponent length (1 byte, or 0 and 2 bytes), exponent, modulus.
    exponent, modulus = _strip_zeros(exponent), _strip_zeros(modulus)
    if len(exponent) <= 255:
        return bytes([len(exponent)]) + exponent + modulus
    return b"\x00" + len(exponent).to_bytes(2, "big") + exponent + modulus


def _parse_rsa_dnskey(public: bytes) -> tuple[bytes, bytes]:
    if len(public) < 3:
        raise HsmError("RSA DNSKEY public key is too short")
    if public[0]:
        size, start = public[0], 1
    else:
        size, start = int.from_bytes(public[1:3], "big"), 3
    exponent, modulus = public[start : start + size], public[start + size :]
    if len(exponent) != size or not modulus:
        raise HsmError("RSA DNSKEY public key is truncated")
    return exponent, modulus


def dnskey_public(session: Session, locator: str) -> bytes:
    """The public key field of the key's DNSKEY RDATA (RFC 3110 / RFC 6605 / RFC 8080)."""
    cka_id = check_locator(locator)
    public = _find_one(session, CKO_PUBLIC_KEY, cka_id)
    if public is None:
        # libhsm reads RSA public values from the private key when there is no public object.
        private = _find_one(session, CKO_PRIVATE_KEY, cka_id)
        if private is None or session.get_int(private, CKA_KEY_TYPE) != CKK_RSA:
            raise HsmError(f"key {locator}: no public key object in token {session.token!r}")
        public = private
    key_type = session.get_int(public, CKA_KEY_TYPE)
    if key_type == CKK_RSA:
        modulus = session.get_bytes(public, CKA_MODULUS)
        exponent = session.get_bytes(public, CKA_PUBLIC_EXPONENT)
        if not modulus or not exponent:
            raise HsmError(f"key {locator}: RSA public key without modulus or exponent")
        return _rsa_dnskey(modulus, exponent)
    point = session.get_bytes(public, CKA_EC_POINT)
    if point is None:
        raise HsmError(f"key {locator}: public key without CKA_EC_POINT")
    # CKA_EC_POINT is a DER OCTET STRING; for ECDSA its content is 0x04 || X || Y (uncompressed).
    value = der.read_single(point, der.TAG_OCTET_STRING)
    if key_type == CKK_EC:
        if not value or value[0] != 0x04:
            raise HsmError(f"key {locator}: EC point is not in uncompressed form")
        return value[1:]
    if key_type == CKK_EC_EDWARDS:
        return value
    raise HsmError(f"key {locator}: unsupported key type {key_type}")


def _public_values(key: HsmKey, public: bytes) -> tuple[int, list[tuple[int, AttrValue]]]:
    """CKK_ type and the key-specific attributes of the public object, from DNSKEY bytes."""
    if key.algorithm == ALG_RSASHA256:
        exponent, modulus = _parse_rsa_dnskey(public)
        if int.from_bytes(modulus, "big").bit_length() != key.bits:
            raise HsmError(f"key {key.locator}: the RSA modulus is not {key.bits} bits")
        return CKK_RSA, [(CKA_MODULUS, modulus), (CKA_PUBLIC_EXPONENT, exponent)]
    oid, _bits, size = _CURVES[key.algorithm]
    if len(public) != size:
        raise HsmError(
            f"key {key.locator}: algorithm {key.algorithm} public key is {len(public)} bytes, not {size}"
        )
    if key.algorithm == ALG_ED25519:
        return CKK_EC_EDWARDS, [(CKA_EC_PARAMS, oid), (CKA_EC_POINT, der.octet_string(public))]
    return CKK_EC, [(CKA_EC_PARAMS, oid), (CKA_EC_POINT, der.octet_string(b"\x04" + public))]


def _find_kek(session: Session, kek_label: str) -> Handle:
    if session.index is not None:
        found = list(session.index.secret_by_label.get(kek_label, []))
    else:
        found = session.find([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, kek_label)])
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise HsmError(f"token {session.token!r} has {what} secret key labelled {kek_label!r}")
    return found[0]


def wrap_private(session: Session, locator: str, kek_label: str, *, seal: bool = False) -> bytes:
    """The private key wrapped under the KEK with CKM_AES_KEY_WRAP_PAD (RFC 5649).

    With `seal`, the key is sealed (`seal_key`) right after the wrap: the blob is deterministic
    (RFC 5649 has a fixed IV), so a lost copy step can reuse it and the key need not stay
    extractable until the peers confirm.
    """
    cka_id = check_locator(locator)
    private = _find_one(session, CKO_PRIVATE_KEY, cka_id)
    if private is None:
        raise HsmError(f"key {locator} is not in token {session.token!r}")
    kek = _find_kek(session, kek_label)
    with doing(f"wrap key {locator} under {kek_label!r}"):
        blob = session.wrap(kek, private, Mechanism.plain(CKM_AES_KEY_WRAP_PAD))
    log.info("wrapped key %s under %s in token %s", locator, kek_label, session.token)
    if seal:
        seal_key(session, locator)
    return blob


def unwrap_private(
    session: Session,
    blob: bytes,
    kek_label: str,
    key: HsmKey,
    public: bytes,
    *,
    extractable: bool = False,
) -> bool:
    """Put a wrapped key pair into the token: the private key from `blob`, the public from `public`.

    `public` is the DNSKEY public key field. All or nothing: the new pair must sign
    and verify, otherwise both objects are destroyed and HsmError is raised.
    The copy is sealed from birth (sensitive, not extractable, not copyable, not modifiable);
    `extractable=True` is refused (kept only so old callers fail loudly, not silently).
    Returns True when the pair was created, False when the token already held it
    (same locator, same public key); a different key under that locator is an error.
    """
    cka_id = check_locator(key.locator)
    if extractable:
        raise HsmError(f"key {key.locator}: a copy unwrapped into a token is never extractable")
    _check_algorithm(key.algorithm, key.bits)
    if key.algorithm == ALG_ED25519:
        _require_ed25519(session, wrappable=False)
    key_type, public_values = _public_values(key, public)
    has_private = _find_one(session, CKO_PRIVATE_KEY, cka_id) is not None
    has_public = _find_one(session, CKO_PUBLIC_KEY, cka_id) is not None
    if has_private != has_public:
        half = "private key without its public" if has_private else "public key without its private"
        raise HsmError(
            f"key {key.locator}: token {session.token!r} holds a {half} key object "
            "(an interrupted copy?); delete the key there and copy it again"
        )
    if has_private:
        if dnskey_public(session, key.locator) == public:
            log.info("key %s already in token %s", key.locator, session.token)
            return False
        raise HsmError(f"key {key.locator}: token {session.token!r} holds a different key under this locator")
    kek = _find_kek(session, kek_label)
    template = _private_template(key_type, cka_id, extractable=False)
    with doing(f"unwrap key {key.locator} with {kek_label!r}"):
        private = session.unwrap(kek, blob, template, Mechanism.plain(CKM_AES_KEY_WRAP_PAD))
    made = [private]
    try:
        with doing(f"create public key {key.locator}"):
            made.append(session.create(_public_template(key_type, cka_id) + public_values))
        matches = _pair_matches(session, key, made[0], made[1])
    except BaseException:
        _destroy_all(session, key.locator, made)
        raise
    if not matches:
        _destroy_all(session, key.locator, made)
        raise HsmError(f"key {key.locator}: the unwrapped private key does not match the public key")
    _indexed(session, CKO_PRIVATE_KEY, cka_id, made[0])
    _indexed(session, CKO_PUBLIC_KEY, cka_id, made[1])
    log.info("unwrapped key %s into token %s", key.locator, session.token)
    return True


def _destroy_all(session: Session, locator: str, handles: list[Handle]) -> None:
    for handle in reversed(handles):
        try:
            session.destroy(handle)
            _unindexed(session, handle)
        except HsmError:
            log.exception("could not remove half-made key %s from token %s", locator, session.token)


def _pair_matches(session: Session, key: HsmKey, private: Handle, public: Handle) -> bool:
    probe = b"ods-duo key pair check " + session.random(16)
    signature = sign(session, key, probe, handle=private)
    return verify(session, key, probe, signature, handle=public)


def _mechanism_and_data(algorithm: int, data: bytes) -> tuple[int, bytes]:
    # What a DNSSEC signer feeds the token: RSA hashes inside, ECDSA signs a digest, EdDSA the message.
    if algorithm == ALG_RSASHA256:
        return CKM_SHA256_RSA_PKCS, data
    if algorithm == ALG_ECDSAP256SHA256:
        return CKM_ECDSA, hashlib.sha256(data).digest()
    if algorithm == ALG_ECDSAP384SHA384:
        return CKM_ECDSA, hashlib.sha384(data).digest()
    if algorithm == ALG_ED25519:
        return CKM_EDDSA, data
    raise HsmError(f"DNSSEC algorithm {algorithm} is not supported")


def sign(session: Session, key: HsmKey, data: bytes, *, handle: Handle | None = None) -> bytes:
    """A DNSSEC-format signature of `data` (RSA PKCS#1 v1.5, ECDSA r||s, Ed25519) by the key."""
    if handle is None:
        handle = _find_one(session, CKO_PRIVATE_KEY, check_locator(key.locator))
        if handle is None:
            raise HsmError(f"key {key.locator} is not in token {session.token!r}")
    mechanism, message = _mechanism_and_data(key.algorithm, data)
    with doing(f"sign with key {key.locator}"):
        return session.sign(handle, message, mechanism)


def verify(
    session: Session, key: HsmKey, data: bytes, signature: bytes, *, handle: Handle | None = None
) -> bool:
    """Whether `signature` over `data` verifies with the key's public key object in this token."""
    if handle is None:
        handle = _find_one(session, CKO_PUBLIC_KEY, check_locator(key.locator))
        if handle is None:
            raise HsmError(f"key {key.locator}: no public key object in token {session.token!r}")
    mechanism, message = _mechanism_and_data(key.algorithm, data)
    with doing(f"verify with key {key.locator}"):
        return session.verify(handle, message, signature, mechanism)


_KEY_TYPES: dict[int, Literal["RSA", "EC", "EC_EDWARDS"]] = {
    CKK_RSA: "RSA",
    CKK_EC: "EC",
    CKK_EC_EDWARDS: "EC_EDWARDS",
}


def list_keys(session: Session) -> list[KeyObject]:
    """The ODS-style key objects in the token (KEKs and transport keys are left out)."""
    result: list[KeyObject] = []
    for object_class, name in ((CKO_PRIVATE_KEY, "private"), (CKO_PUBLIC_KEY, "public")):
        for handle in session.find([(CKA_CLASS, object_class)]):
            cka_id = session.get_bytes(handle, CKA_ID) or b""
            label = session.get_bytes(handle, CKA_LABEL) or b""
            if len(cka_id) != ID_BYTES or label != cka_id.hex().encode():
                continue
            ck_type = session.get_int(handle, CKA_KEY_TYPE)
            key_type: Literal["RSA", "EC", "EC_EDWARDS", "other"] = "other"
            if ck_type is not None:
                key_type = _KEY_TYPES.get(ck_type, "other")
            extractable = session.get_bool(handle, CKA_EXTRACTABLE) if name == "private" else None
            result.append(
                KeyObject(
                    locator=cka_id.hex(),
                    object_class="private" if name == "private" else "public",
                    key_type=key_type,
                    extractable=extractable,
                )
            )
    return sorted(result, key=lambda k: (k.locator, k.object_class))


def delete_key(session: Session, locator: str) -> int:
    """Destroy the key's private and public objects; returns how many were destroyed (0: none there)."""
    cka_id = check_locator(locator)
    count = 0
    for object_class in (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY):
        for handle in _find_all(session, object_class, cka_id):
            with doing(f"delete key {locator}"):
                session.destroy(handle)
            _unindexed(session, handle)
            count += 1
    log.info("deleted %d objects of key %s from token %s", count, locator, session.token)
    return count
