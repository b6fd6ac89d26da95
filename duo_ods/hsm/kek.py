"""The duo's key-encryption key (KEK): made in one token, carried to the others wrapped.

Distribution without the KEK ever in clear outside a token:
1. each receiver makes an RSA-3072 transport key pair (`make_transport_key`); only its
   public key (a DER SubjectPublicKeyInfo) leaves the token;
2. the holder wraps the KEK to that public key with RSA-OAEP (`wrap_kek_for`);
3. the receiver unwraps it into a token object (`unwrap_kek`).
`kek_fingerprint` then shows that two tokens hold the same KEK without revealing it.
The controller must make sure a transport public key really comes from the receiver
(compare `spki_fingerprint` on both ends); after distribution `delete_transport_key`.

OAEP parameters are SHA-1 / MGF1-SHA1: SoftHSM 2.6.1 answers CKR_ARGUMENTS_BAD to any
other hash. With a random 256-bit payload this is still sound (OAEP's security does not
rest on SHA-1 collision resistance).

The KEK is AES-256, CKA_SENSITIVE, usable only for WRAP/UNWRAP (no ENCRYPT/DECRYPT,
so it cannot be turned into an encryption oracle), and CKA_EXTRACTABLE only so that a
token holding it can pass it on to the next receiver (and to the backup token).
"""

from __future__ import annotations

import hashlib
import logging

from duo_ods.errors import HsmError
from duo_ods.hsm import der
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_DECRYPT,
    CKA_ENCRYPT,
    CKA_EXTRACTABLE,
    CKA_ID,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PRIVATE,
    CKA_PUBLIC_EXPONENT,
    CKA_SENSITIVE,
    CKA_SIGN,
    CKA_TOKEN,
    CKA_UNWRAP,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_VERIFY,
    CKA_WRAP,
    CKK_AES,
    CKK_RSA,
    CKM_AES_KEY_GEN,
    CKM_AES_KEY_WRAP,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY,
    CKO_SECRET_KEY,
    AttrValue,
    Handle,
    Mechanism,
    Session,
    doing,
)

log = logging.getLogger(__name__)

KEK_BYTES = 32
TRANSPORT_BITS = 3072
RSA_EXPONENT = 65537

# Fingerprint probe: a fixed, public AES-256 key. Wrapping it under the KEK with
# CKM_AES_KEY_WRAP (RFC 3394: deterministic, fixed IV) gives the same bytes in every
# token that holds the same KEK. Chosen over a KCV (C_Encrypt of a zero block) because
# the KEK deliberately has no CKA_ENCRYPT, and because SoftHSM leaves CKA_CHECK_VALUE
# empty on unwrapped keys. The hash of the wrap, not the wrap itself, is shown.
_PROBE_VALUE = hashlib.sha256(b"ods-duo KEK fingerprint probe v1").digest()


def _destroy_quietly(session: Session, handle: Handle) -> None:
    # Only session objects go this way (they vanish with the session anyway): never let
    # their cleanup hide the error that is already on its way out.
    try:
        session.destroy(handle)
    except HsmError as exc:
        log.warning("%s", exc)


def _secret_keys(session: Session, label: str) -> list[Handle]:
    return session.find([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, label)])


def _one(session: Session, object_class: int, label: str, what: str) -> Handle:
    found = session.find([(CKA_CLASS, object_class), (CKA_LABEL, label)])
    if len(found) != 1:
        count = "no" if not found else str(len(found))
        raise HsmError(f"token {session.token!r} has {count} {what} labelled {label!r}")
    return found[0]


def _kek_template(label: str) -> list[tuple[int, AttrValue]]:
    return [
        (CKA_CLASS, CKO_SECRET_KEY),
        (CKA_KEY_TYPE, CKK_AES),
        (CKA_LABEL, label),
        (CKA_TOKEN, True),
        (CKA_PRIVATE, True),
        (CKA_SENSITIVE, True),
        (CKA_EXTRACTABLE, True),
        (CKA_WRAP, True),
        (CKA_UNWRAP, True),
        (CKA_ENCRYPT, False),
        (CKA_DECRYPT, False),
        (CKA_SIGN, False),
        (CKA_VERIFY, False),
    ]


def has_kek(session: Session, label: str) -> bool:
    return bool(_secret_keys(session, label))


def generate_kek(session: Session, label: str) -> None:
    """Make the duo's AES-256 KEK in this token (once, on one node); refuses if one exists."""
    if has_kek(session, label):
        raise HsmError(f"token {session.token!r} already has a KEK labelled {label!r}")
    with doing(f"generate KEK {label!r}"):
        session.generate_key(CKM_AES_KEY_GEN, [*_kek_template(label), (CKA_VALUE_LEN, KEK_BYTES)])
    log.info("generated KEK %s in token %s", label, session.token)


def seal_kek(session: Session, label: str) -> None:
    """Make the KEK non-extractable (PKCS#11 allows true -> false only, never back).

    For when every token that needs the KEK has it: afterwards no one holding the PIN
    can wrap the KEK out to a transport key of their choosing. A later node then gets
    the KEK from a token left unsealed (e.g. the backup token) or a new KEK is rolled.
    """
    handle = _one(session, CKO_SECRET_KEY, label, "KEK")
    with doing(f"seal KEK {label!r}"):
        session.set_attributes(handle, [(CKA_EXTRACTABLE, False)])
    log.info("sealed KEK %s in token %s", label, session.token)


def delete_kek(session: Session, label: str) -> bool:
    """Destroy the KEK; False when there was none."""
    found = _secret_keys(session, label)
    for handle in found:
        with doing(f"delete KEK {label!r}"):
            session.destroy(handle)
    if found:
        log.info("deleted KEK %s from token %s", label, session.token)
    return bool(found)


def spki_fingerprint(spki: bytes) -> str:
    """SHA-256 of a transport public key, for an operator or peer to compare out of band."""
    return hashlib.sha256(spki).hexdigest()


def transport_public_key(session: Session, label: str) -> bytes:
    """The SubjectPublicKeyInfo of this token's transport key."""
    public = _one(session, CKO_PUBLIC_KEY, label, "transport public key")
    modulus = session.get_bytes(public, CKA_MODULUS)
    exponent = session.get_bytes(public, CKA_PUBLIC_EXPONENT)
    if not modulus or not exponent:
        raise HsmError(f"transport key {label!r} in token {session.token!r} has no RSA public values")
    return der.rsa_spki(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


def make_transport_key(session: Session, label: str) -> bytes:
    """Make (or reuse) this token's RSA-3072 transport key pair; return its public key (DER SPKI).

    The private half can only unwrap (no decrypt/sign) and never leaves the token.
    It carries a 16-byte CKA_ID like every private key: ods-hsmutil's key listing
    fails on a private key without one.
    """
    if session.find([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, label)]):
        return transport_public_key(session, label)
    cka_id = session.random(16)
    public: list[tuple[int, AttrValue]] = [
        (CKA_LABEL, label),
        (CKA_ID, cka_id),
        (CKA_KEY_TYPE, CKK_RSA),
        (CKA_TOKEN, True),
        (CKA_PRIVATE, False),
        (CKA_WRAP, True),
        (CKA_ENCRYPT, False),
        (CKA_VERIFY, False),
        (CKA_MODULUS_BITS, TRANSPORT_BITS),
        (CKA_PUBLIC_EXPONENT, RSA_EXPONENT.to_bytes(3, "big")),
    ]
    private: list[tuple[int, AttrValue]] = [
        (CKA_LABEL, label),
        (CKA_ID, cka_id),
        (CKA_KEY_TYPE, CKK_RSA),
        (CKA_TOKEN, True),
        (CKA_PRIVATE, True),
        (CKA_SENSITIVE, True),
        (CKA_EXTRACTABLE, False),
        (CKA_UNWRAP, True),
        (CKA_DECRYPT, False),
        (CKA_SIGN, False),
    ]
    with doing(f"generate transport key {label!r}"):
        session.generate_key_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, public, private)
    log.info("generated transport key %s in token %s", label, session.token)
    return transport_public_key(session, label)


def delete_transport_key(session: Session, label: str) -> int:
    """Destroy both halves of the transport key; returns how many objects went."""
    count = 0
    for object_class in (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY):
        for handle in session.find([(CKA_CLASS, object_class), (CKA_LABEL, label)]):
            with doing(f"delete transport key {label!r}"):
                session.destroy(handle)
            count += 1
    return count


def wrap_kek_for(session: Session, kek_label: str, transport_public: bytes) -> bytes:
    """The KEK wrapped with RSA-OAEP (SHA-1/MGF1-SHA1) to a receiver's transport public key."""
    modulus, exponent = der.parse_rsa_spki(transport_public)
    if modulus.bit_length() < TRANSPORT_BITS:
        raise HsmError(f"transport key has {modulus.bit_length()} bits; need at least {TRANSPORT_BITS}")
    kek = _one(session, CKO_SECRET_KEY, kek_label, "KEK")
    size = (modulus.bit_length() + 7) // 8
    receiver = session.create(
        [
            (CKA_CLASS, CKO_PUBLIC_KEY),
            (CKA_KEY_TYPE, CKK_RSA),
            (CKA_TOKEN, False),  # a session object: gone when the session ends
            (CKA_WRAP, True),
            (CKA_ENCRYPT, False),
            (CKA_VERIFY, False),
            (CKA_MODULUS, modulus.to_bytes(size, "big")),
            (CKA_PUBLIC_EXPONENT, exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")),
        ],
        operation="import transport public key: C_CreateObject",
    )
    try:
        with doing(f"wrap KEK {kek_label!r} for a transport key"):
            blob = session.wrap(receiver, kek, Mechanism.oaep_sha1())
    finally:
        _destroy_quietly(session, receiver)
    log.info(
        "wrapped KEK %s in token %s for transport key %s",
        kek_label,
        session.token,
        spki_fingerprint(transport_public)[:16],
    )
    return blob


def unwrap_kek(session: Session, blob: bytes, transport_label: str, kek_label: str) -> None:
    """Unwrap a KEK sent to this token's transport key and store it as `kek_label`.

    SoftHSM neither fills in CKA_VALUE_LEN of an unwrapped key nor accepts it in the
    template, so nothing here can check the size: compare `kek_fingerprint` with the
    sender's, which proves the very same key arrived.
    """
    if has_kek(session, kek_label):
        raise HsmError(f"token {session.token!r} already has a KEK labelled {kek_label!r}")
    transport = _one(session, CKO_PRIVATE_KEY, transport_label, "transport private key")
    with doing(f"unwrap KEK {kek_label!r}"):
        session.unwrap(transport, blob, _kek_template(kek_label), Mechanism.oaep_sha1())
    log.info("unwrapped KEK %s into token %s", kek_label, session.token)


def kek_fingerprint(session: Session, kek_label: str) -> str:
    """A non-secret value equal in two tokens exactly when they hold the same KEK (32 hex digits)."""
    kek = _one(session, CKO_SECRET_KEY, kek_label, "KEK")
    probe = session.create(
        [
            (CKA_CLASS, CKO_SECRET_KEY),
            (CKA_KEY_TYPE, CKK_AES),
            (CKA_TOKEN, False),
            (CKA_SENSITIVE, False),
            (CKA_EXTRACTABLE, True),
            (CKA_VALUE, _PROBE_VALUE),
        ],
        operation="create fingerprint probe: C_CreateObject",
    )
    try:
        with doing(f"fingerprint KEK {kek_label!r}"):
            wrapped = session.wrap(kek, probe, Mechanism.plain(CKM_AES_KEY_WRAP))
    finally:
        _destroy_quietly(session, probe)
    return hashlib.sha256(b"ods-duo KEK fingerprint v1" + wrapped).hexdigest()[:32]
