"""The duo's key-encryption key (KEK): made in the backup token, handed on wrapped, held sealed.

Custody, enforced by the tokens (DESIGN invariant 2; docs/security.md has the threat model):
- The KEK is born in ONE token, the backup's (`generate_kek`): AES-256, CKA_SENSITIVE,
  WRAP/UNWRAP only (no ENCRYPT/DECRYPT/SIGN/VERIFY/DERIVE), not copyable and not modifiable
  (so nobody holding the PIN can turn CKA_DECRYPT on and use it as an AES oracle to open
  bundles), CKA_WRAP_WITH_TRUSTED (it can be wrapped only to a key with CKA_TRUSTED) and a
  CKA_UNWRAP_TEMPLATE (`UNWRAP_TEMPLATE`): whatever it unwraps is sensitive, not extractable,
  not derivable, not copyable, not modifiable. That defeats the wrap/unwrap attack (unwrap a
  bundle as a readable generic secret).
- It leaves the backup token only wrapped (RSA-OAEP) to a transport public key that the
  backup token's SO imported as trusted (`import_trusted_transport_key`) after checking the
  fingerprint the operator confirmed. A public key from the wire alone is never used to wrap.
- A receiver makes a one-time RSA-3072 transport key pair (`make_transport_key`); its private
  half can only unwrap an AES key that comes out sealed (its own CKA_UNWRAP_TEMPLATE).
  `unwrap_kek` stores the node copy: not extractable at all, not modifiable, same unwrap
  template. Then `delete_transport_key`.
- `kek init --replace`: `retire_kek` keeps the old KEK in the backup token under
  `retired_label(label, fingerprint)` with CKA_WRAP false (unwrap only), still handable to a
  trusted transport key (a node being restored from old bundles needs it), so no bundle becomes
  unopenable; then the caller makes a new KEK under the usual label.
`kek_fingerprint` shows that two tokens hold the same KEK without revealing it.

SoftHSM 2.6.1 facts this relies on (probed, see docs/security.md):
- OAEP only with SHA-1/MGF1-SHA1 (CKR_ARGUMENTS_BAD otherwise); sound for a random payload.
- CKA_TRUSTED is settable by the SO only and the SO creates public objects only. A trusted
  object is therefore public: it can be seen (and destroyed) without login and is stored in
  clear in the token directory. Harmless for a transport PUBLIC key; fatal for a secret key
  (a public AES key's CKA_VALUE lies in clear in its .object file). So the KEK is never made
  trusted, and DNSSEC keys cannot use CKA_WRAP_WITH_TRUSTED (it would need a trusted KEK).
- An unwrap template may not contain CKA_UNWRAP_TEMPLATE (CKR_ATTRIBUTE_VALUE_INVALID), so a
  transport key cannot force the KEK it unwraps to carry one; `unwrap_kek` sets it. The
  residual risk (someone with the receiver's PIN and the OAEP blob, while the transport key
  exists) is in docs/security.md; keep the transport key's life short.
- C_UnwrapKey applies the template in order and refuses everything after CKA_MODIFIABLE
  false (CKR_ATTRIBUTE_READ_ONLY): it always comes last in our templates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from duo_ods.errors import HsmError
from duo_ods.hsm import der
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_COPYABLE,
    CKA_DECRYPT,
    CKA_DERIVE,
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
    CKA_TRUSTED,
    CKA_UNWRAP,
    CKA_UNWRAP_TEMPLATE,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_WRAP_WITH_TRUSTED,
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
RETIRED_INFIX = ".retired."

# What the token forces on everything the KEK unwraps (checked by the token: an unwrap whose
# template lacks any of these fails with CKR_TEMPLATE_INCONSISTENT). keys._private_template
# (sealed form) matches it. CKA_MODIFIABLE stays last (see the module docstring).
UNWRAP_TEMPLATE: list[tuple[int, AttrValue]] = [
    (CKA_SENSITIVE, True),
    (CKA_EXTRACTABLE, False),
    (CKA_DERIVE, False),
    (CKA_COPYABLE, False),
    (CKA_MODIFIABLE, False),
]

# What a transport private key lets through: only an AES key that is sealed, wrap/unwrap only
# and not modifiable (else the receiver's PIN holder could unwrap a sent KEK with DECRYPT on).
# The holder variant (the backup re-wrapping its own KEK in retire_kek) keeps it extractable,
# but then only to trusted keys.
_TRANSPORT_UNWRAP_COMMON: list[tuple[int, AttrValue]] = [
    (CKA_CLASS, CKO_SECRET_KEY),
    (CKA_KEY_TYPE, CKK_AES),
    (CKA_SENSITIVE, True),
    (CKA_ENCRYPT, False),
    (CKA_DECRYPT, False),
    (CKA_SIGN, False),
    (CKA_VERIFY, False),
    (CKA_DERIVE, False),
    (CKA_COPYABLE, False),
]
_TRANSPORT_UNWRAP_NODE = [*_TRANSPORT_UNWRAP_COMMON, (CKA_EXTRACTABLE, False), (CKA_MODIFIABLE, False)]
_TRANSPORT_UNWRAP_HOLDER = [*_TRANSPORT_UNWRAP_COMMON, (CKA_WRAP_WITH_TRUSTED, True), (CKA_MODIFIABLE, False)]

# Fingerprint probe: a fixed, public AES-256 key. Wrapping it under the KEK with
# CKM_AES_KEY_WRAP (RFC 3394: deterministic, fixed IV) gives the same bytes in every
# token that holds the same KEK. Chosen over a KCV (C_Encrypt of a zero block) because
# the KEK deliberately has no CKA_ENCRYPT, and because SoftHSM leaves CKA_CHECK_VALUE
# empty on unwrapped keys. The hash of the wrap, not the wrap itself, is shown.
_PROBE_VALUE = hashlib.sha256(b"ods-duo KEK fingerprint probe v1").digest()


@dataclass(frozen=True)
class TrustedKey:
    """A transport public key the token's SO imported with CKA_TRUSTED (a KEK may be wrapped to it)."""

    label: str
    fingerprint: str  # spki_fingerprint of its SubjectPublicKeyInfo


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


def _kek_template(
    label: str, *, holder: bool, wrap: bool = True, extra: list[tuple[int, AttrValue]] | None = None
) -> list[tuple[int, AttrValue]]:
    """A KEK object: in the holder (backup) token extractable to trusted keys only; elsewhere sealed."""
    template: list[tuple[int, AttrValue]] = [
        (CKA_CLASS, CKO_SECRET_KEY),
        (CKA_KEY_TYPE, CKK_AES),
        (CKA_LABEL, label),
        (CKA_TOKEN, True),
        (CKA_PRIVATE, True),
        (CKA_SENSITIVE, True),
        (CKA_EXTRACTABLE, holder),
        (CKA_WRAP, wrap),
        (CKA_UNWRAP, True),
        (CKA_ENCRYPT, False),
        (CKA_DECRYPT, False),
        (CKA_SIGN, False),
        (CKA_VERIFY, False),
        (CKA_DERIVE, False),
        (CKA_COPYABLE, False),
        (CKA_UNWRAP_TEMPLATE, list(UNWRAP_TEMPLATE)),
        *([(CKA_WRAP_WITH_TRUSTED, True)] if holder else []),
        *(extra or []),
    ]
    template.append((CKA_MODIFIABLE, False))  # last: see the module docstring
    return template


def has_kek(session: Session, label: str) -> bool:
    return bool(_secret_keys(session, label))


def generate_kek(session: Session, label: str) -> None:
    """Make the duo's AES-256 KEK in this token: the backup's, the one place that hands it on.

    Refuses if one exists. The KEK is extractable, but only to a trusted transport key
    (CKA_WRAP_WITH_TRUSTED), and can never be made to decrypt or be copied.
    """
    if has_kek(session, label):
        raise HsmError(f"token {session.token!r} already has a KEK labelled {label!r}")
    with doing(f"generate KEK {label!r}"):
        session.generate_key(
            CKM_AES_KEY_GEN, _kek_template(label, holder=True, extra=[(CKA_VALUE_LEN, KEK_BYTES)])
        )
    log.info("generated KEK %s in token %s", label, session.token)


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


def _rsa_spki(session: Session, public: Handle, what: str) -> bytes:
    modulus = session.get_bytes(public, CKA_MODULUS)
    exponent = session.get_bytes(public, CKA_PUBLIC_EXPONENT)
    if not modulus or not exponent:
        raise HsmError(f"{what} in token {session.token!r} has no RSA public values")
    return der.rsa_spki(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


def transport_public_key(session: Session, label: str) -> bytes:
    """The SubjectPublicKeyInfo of this token's transport key."""
    public = _one(session, CKO_PUBLIC_KEY, label, "transport public key")
    return _rsa_spki(session, public, f"transport key {label!r}")


def make_transport_key(session: Session, label: str, *, holder: bool = False) -> bytes:
    """Make (or reuse) this token's RSA-3072 transport key pair; return its public key (DER SPKI).

    The private half can only unwrap, never leaves the token, and its CKA_UNWRAP_TEMPLATE lets
    through only a sealed, wrap/unwrap-only, unmodifiable AES key (`holder`: one that stays
    extractable to trusted keys, for the backup token's own `retire_kek`). It carries a
    16-byte CKA_ID like every private key: ods-hsmutil's key listing fails without one.
    A pair from an older ods-duo (no unwrap template) is replaced.
    """
    existing = session.find([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, label)])
    if existing:
        if all(session.get_bytes(h, CKA_UNWRAP_TEMPLATE) for h in existing):
            return transport_public_key(session, label)
        delete_transport_key(session, label)
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
        (CKA_COPYABLE, False),
        (CKA_MODIFIABLE, False),
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
        (CKA_DERIVE, False),
        (CKA_COPYABLE, False),
        (CKA_UNWRAP_TEMPLATE, list(_TRANSPORT_UNWRAP_HOLDER if holder else _TRANSPORT_UNWRAP_NODE)),
        (CKA_MODIFIABLE, False),
    ]
    with doing(f"generate transport key {label!r}"):
        session.generate_key_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, public, private)
    log.info("generated transport key %s in token %s", label, session.token)
    return transport_public_key(session, label)


def has_transport_key(session: Session, label: str) -> bool:
    """Whether the token holds the public half of a transport key with this label."""
    return bool(session.find([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, label)]))


def delete_transport_key(session: Session, label: str) -> int:
    """Destroy both halves of the transport key; returns how many objects went."""
    count = 0
    for object_class in (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY):
        for handle in session.find([(CKA_CLASS, object_class), (CKA_LABEL, label)]):
            with doing(f"delete transport key {label!r}"):
                session.destroy(handle)
            count += 1
    return count


# --- trusted transport keys: the SO's pins -------------------------------------------------


def import_trusted_transport_key(
    so_session: Session, label: str, spki: bytes, fingerprint: str
) -> TrustedKey:
    """SO only: pin a receiver's transport public key as a key the KEK may be wrapped to.

    `so_session` comes from token.open_so_session. `fingerprint` is the spki_fingerprint the
    operator confirmed on the receiving token itself (out of band, or pinned in the config);
    the key is refused unless `spki` has exactly that fingerprint. The object is a public
    token object (SoftHSM: the SO can make no other), CKA_TRUSTED, wrap only, not copyable,
    not modifiable. Anyone can see it or destroy it (a denial of service, nothing leaks); no one
    but the SO can make another trusted key.
    """
    actual = spki_fingerprint(spki)
    if not hmac.compare_digest(actual, fingerprint.strip().lower()):
        raise HsmError(
            f"transport key for {label!r}: fingerprint {actual} is not the confirmed {fingerprint.strip()}"
        )
    modulus, exponent = der.parse_rsa_spki(spki)
    if modulus.bit_length() < TRANSPORT_BITS:
        raise HsmError(f"transport key has {modulus.bit_length()} bits; need at least {TRANSPORT_BITS}")
    if so_session.find([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, label)]):
        raise HsmError(f"token {so_session.token!r} already has a public key labelled {label!r}")
    size = (modulus.bit_length() + 7) // 8
    with doing(f"import trusted transport key {label!r}"):
        handle = so_session.create(
            [
                (CKA_CLASS, CKO_PUBLIC_KEY),
                (CKA_KEY_TYPE, CKK_RSA),
                (CKA_LABEL, label),
                (CKA_ID, bytes.fromhex(actual)[:16]),
                (CKA_TOKEN, True),
                (CKA_PRIVATE, False),
                (CKA_TRUSTED, True),
                (CKA_WRAP, True),
                (CKA_ENCRYPT, False),
                (CKA_VERIFY, False),
                (CKA_DERIVE, False),
                (CKA_MODULUS, modulus.to_bytes(size, "big")),
                (CKA_PUBLIC_EXPONENT, exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")),
                (CKA_COPYABLE, False),
                (CKA_MODIFIABLE, False),
            ],
            operation="C_CreateObject",
        )
    if so_session.get_bool(handle, CKA_TRUSTED) is not True:
        raise HsmError(f"token {so_session.token!r} did not keep CKA_TRUSTED on {label!r}")
    log.info("SO of token %s pinned transport key %s (%s)", so_session.token, label, actual[:16])
    return TrustedKey(label=label, fingerprint=actual)


def trusted_transport_keys(session: Session) -> list[TrustedKey]:
    """Every public key in the token with CKA_TRUSTED (what the KEK can be wrapped to)."""
    found: list[TrustedKey] = []
    for handle in session.find([(CKA_CLASS, CKO_PUBLIC_KEY)]):
        if session.get_bool(handle, CKA_TRUSTED) is not True:
            continue
        label = (session.get_bytes(handle, CKA_LABEL) or b"").decode(errors="replace")
        spki = _rsa_spki(session, handle, f"trusted key {label!r}")
        found.append(TrustedKey(label=label, fingerprint=spki_fingerprint(spki)))
    return sorted(found, key=lambda k: k.label)


def delete_trusted_transport_key(session: Session, label: str) -> int:
    """Unpin: destroy the trusted public key(s) with this label (any session may; it is public)."""
    count = 0
    for handle in session.find([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, label)]):
        if session.get_bool(handle, CKA_TRUSTED) is True:
            with doing(f"delete trusted transport key {label!r}"):
                session.destroy(handle)
            count += 1
    return count


def _trusted(session: Session, label: str) -> Handle:
    handle = _one(session, CKO_PUBLIC_KEY, label, "transport public key")
    if session.get_bool(handle, CKA_TRUSTED) is not True or session.get_bool(handle, CKA_TOKEN) is not True:
        raise HsmError(
            f"public key {label!r} in token {session.token!r} is not a trusted transport key "
            "(only the token's SO can pin one: import_trusted_transport_key)"
        )
    return handle


def wrap_kek_to_trusted(session: Session, kek_label: str, trusted_label: str) -> bytes:
    """The KEK wrapped with RSA-OAEP (SHA-1/MGF1-SHA1) to a transport key the SO pinned as trusted.

    The token itself refuses any other wrapping key (CKA_WRAP_WITH_TRUSTED on the KEK:
    CKR_KEY_NOT_WRAPPABLE); the check here only gives a clearer error first.
    """
    receiver = _trusted(session, trusted_label)
    kek = _one(session, CKO_SECRET_KEY, kek_label, "KEK")
    with doing(f"wrap KEK {kek_label!r} to trusted key {trusted_label!r}"):
        blob = session.wrap(receiver, kek, Mechanism.oaep_sha1())
    log.info("wrapped KEK %s in token %s to trusted key %s", kek_label, session.token, trusted_label)
    return blob


def wrap_kek_for(session: Session, kek_label: str, transport_public: bytes) -> bytes:
    """The KEK wrapped to the trusted transport key whose public key is `transport_public`.

    The public key from the caller (the wire) only selects a key the token's SO already pinned;
    it is never itself used to wrap. HsmError when no trusted key matches.
    """
    modulus, exponent = der.parse_rsa_spki(transport_public)
    wanted = spki_fingerprint(der.rsa_spki(modulus, exponent))
    for key in trusted_transport_keys(session):
        if hmac.compare_digest(key.fingerprint, wanted):
            return wrap_kek_to_trusted(session, kek_label, key.label)
    raise HsmError(
        f"refusing to wrap KEK {kek_label!r} in token {session.token!r} to transport key {wanted}: "
        "the token's SO has not pinned it as trusted (import_trusted_transport_key after the operator "
        "confirmed that fingerprint on the receiving token)"
    )


def unwrap_kek(
    session: Session,
    blob: bytes,
    transport_label: str,
    kek_label: str,
    *,
    holder: bool = False,
    wrap: bool = True,
) -> None:
    """Unwrap a KEK sent to this token's transport key and store it as `kek_label`.

    The copy is sealed (not extractable at all), not modifiable, not copyable, wrap/unwrap only
    and carries UNWRAP_TEMPLATE. `holder` keeps it extractable to trusted keys (a replacement
    backup token); `wrap=False` stores it unwrap only (a retired KEK handed to a node to restore
    old bundles). SoftHSM neither fills in CKA_VALUE_LEN of an unwrapped key nor accepts it in
    the template: compare `kek_fingerprint` with the sender's, which proves the same key arrived.
    """
    if has_kek(session, kek_label):
        raise HsmError(f"token {session.token!r} already has a KEK labelled {kek_label!r}")
    transport = _one(session, CKO_PRIVATE_KEY, transport_label, "transport private key")
    with doing(f"unwrap KEK {kek_label!r}"):
        session.unwrap(
            transport, blob, _kek_template(kek_label, holder=holder, wrap=wrap), Mechanism.oaep_sha1()
        )
    log.info("unwrapped KEK %s into token %s", kek_label, session.token)


def _probe(session: Session, what: str) -> Handle:
    """A session AES key of a fixed, public value: wrapped by a KEK, it tells KEKs apart (or equal)
    without revealing them."""
    return session.create(
        [
            (CKA_CLASS, CKO_SECRET_KEY),
            (CKA_KEY_TYPE, CKK_AES),
            (CKA_TOKEN, False),
            (CKA_SENSITIVE, False),
            (CKA_EXTRACTABLE, True),
            (CKA_VALUE, _PROBE_VALUE),
        ],
        operation=f"create {what} probe: C_CreateObject",
    )


def kek_fingerprint(session: Session, kek_label: str) -> str:
    """A non-secret value equal in two tokens exactly when they hold the same KEK (32 hex digits).

    Needs CKA_WRAP on the KEK; a retired KEK (unwrap only) carries its fingerprint in its label.
    """
    kek = _one(session, CKO_SECRET_KEY, kek_label, "KEK")
    probe = _probe(session, "fingerprint")
    try:
        with doing(f"fingerprint KEK {kek_label!r}"):
            wrapped = session.wrap(kek, probe, Mechanism.plain(CKM_AES_KEY_WRAP))
    finally:
        _destroy_quietly(session, probe)
    return hashlib.sha256(b"ods-duo KEK fingerprint v1" + wrapped).hexdigest()[:32]


# --- kek init --replace: the old KEK stays, unwrap only ------------------------------------


def retired_label(kek_label: str, fingerprint: str) -> str:
    return f"{kek_label}{RETIRED_INFIX}{fingerprint}"


def retired_keks(session: Session, kek_label: str) -> dict[str, str]:
    """Retired KEKs in the token: fingerprint -> label (find the one a bundle's `kek` names)."""
    prefix = f"{kek_label}{RETIRED_INFIX}"
    found: dict[str, str] = {}
    for handle in session.find([(CKA_CLASS, CKO_SECRET_KEY)]):
        label = (session.get_bytes(handle, CKA_LABEL) or b"").decode(errors="replace")
        if label.startswith(prefix):
            found[label[len(prefix) :]] = label
    return found


def _same_kek(session: Session, wrapping: Handle, unwrapping: Handle) -> bool:
    """Whether `unwrapping` opens what `wrapping` wraps (RFC 3394's integrity check proves it)."""
    probe = _probe(session, "retire")
    try:
        blob = session.wrap(wrapping, probe, Mechanism.plain(CKM_AES_KEY_WRAP))
    finally:
        _destroy_quietly(session, probe)
    template: list[tuple[int, AttrValue]] = [
        (CKA_CLASS, CKO_SECRET_KEY),
        (CKA_KEY_TYPE, CKK_AES),
        (CKA_TOKEN, False),
        *UNWRAP_TEMPLATE,
    ]
    try:
        opened = session.unwrap(unwrapping, blob, template, Mechanism.plain(CKM_AES_KEY_WRAP))
    except HsmError:
        return False
    _destroy_quietly(session, opened)
    return True


def retire_kek(session: Session, kek_label: str, transport_label: str, trusted_label: str) -> str:
    """Keep the KEK `kek_label` as `retired_label(...)`, unwrap only, and remove it under its label.

    For `kek init --replace` in the backup token, before the new KEK is made: bundles wrapped
    under the old KEK stay openable here, and the retired KEK can still be handed to a trusted
    transport key (a node restored from old bundles). A KEK is not modifiable, so it cannot be
    relabelled in place: it is wrapped to this token's own holder transport key
    (`make_transport_key(..., holder=True)`, pinned by the SO as `trusted_label`) and unwrapped
    again under the new label with CKA_WRAP false; the original goes only once the copy is
    proven to be the same key. Idempotent (a rerun after a crash finishes the job).
    Returns the retired label.
    """
    kek = _one(session, CKO_SECRET_KEY, kek_label, "KEK")
    fingerprint = kek_fingerprint(session, kek_label)
    label = retired_label(kek_label, fingerprint)
    if not has_kek(session, label):
        blob = wrap_kek_to_trusted(session, kek_label, trusted_label)
        unwrap_kek(session, blob, transport_label, label, holder=True, wrap=False)
    retired = _one(session, CKO_SECRET_KEY, label, "retired KEK")
    if not _same_kek(session, kek, retired):
        raise HsmError(
            f"token {session.token!r}: {label!r} does not open what {kek_label!r} wraps; kept both"
        )
    with doing(f"retire KEK {kek_label!r}"):
        session.destroy(kek)
    log.info("retired KEK %s in token %s as %s (unwrap only)", kek_label, session.token, label)
    return label


def kek_label_for(session: Session, kek_label: str, fingerprint: str | None) -> str:
    """The label of the KEK with this fingerprint in the token: the KEK's own, or a retired one's.

    None means the current KEK. HsmError when the token holds no such KEK: a bundle wrapped under
    it cannot be opened here (the restore hands a node every retired KEK its bundles need first).
    """
    if fingerprint is None or (
        has_kek(session, kek_label) and kek_fingerprint(session, kek_label) == fingerprint
    ):
        return kek_label
    label = retired_keks(session, kek_label).get(fingerprint)
    if label is None:
        raise HsmError(
            f"token {session.token!r} holds no KEK with fingerprint {fingerprint} (current or retired)"
        )
    return label


def drop_retired_keks(session: Session, kek_label: str) -> int:
    """Destroy every retired KEK in the token; how many went.

    For a node only, after a restore unwrapped the bundles made under them: its keys are in its
    token then, and a node never needs an old KEK again (new keys come under the current one). The
    backup token keeps its retired KEKs for as long as it keeps bundles wrapped under them.
    """
    count = 0
    for label in retired_keks(session, kek_label).values():
        count += int(delete_kek(session, label))
    return count
