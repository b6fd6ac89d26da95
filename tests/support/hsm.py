"""Test-only HSM helpers: make a scratch token and read a key's algorithm and size back.

They were in duo_ods.hsm but only the tests used them: a node's token is made by `softhsm2-util`
(duo_ods/node/token.py).
"""

from __future__ import annotations

import logging
from typing import Literal

from duo_ods.errors import HsmError
from duo_ods.hsm._p11 import (
    CKA_EC_PARAMS,
    CKA_KEY_TYPE,
    CKA_MODULUS,
    CKK_EC_EDWARDS,
    CKK_RSA,
    CKO_PRIVATE_KEY,
    CKR_PIN_INCORRECT,
    CKR_USER_ALREADY_LOGGED_IN,
    Library,
    P11Failure,
    Session,
    TokenSlot,
    acquire,
    release,
)
from duo_ods.hsm.keys import (
    _CURVES,
    ALG_ED25519,
    ALG_RSASHA256,
    NAME_ED25519,
    HsmKey,
    _find_one,
    check_locator,
)
from duo_ods.hsm.token import _check_label as check_label
from duo_ods.hsm.token import _close_quietly, find_slot

log = logging.getLogger(__name__)

MIN_PIN_LEN = 4  # SoftHSM's ulMinPinLen; real HSMs are not lower


def init_token(module: str, label: str, pin: str, so_pin: str) -> Literal["created", "exists"]:
    """Initialise a token labelled `label` in the free slot and set its user PIN.

    Idempotent: an existing token with this label that the PIN opens gives "exists".
    Any other existing token with this label is refused, never re-initialised
    (C_InitToken on it would destroy its keys).
    """
    check_label(label)
    if len(pin) < MIN_PIN_LEN or len(so_pin) < MIN_PIN_LEN:
        raise HsmError(f"init token {label!r}: PIN and SO PIN need at least {MIN_PIN_LEN} characters")
    library = acquire(module)
    try:
        existing = [t for t in library.tokens() if t.label == label]
        if existing:
            _check_existing(library, label, existing, pin)
            log.info("token %s already initialised", label)
            return "exists"
        free = library.free_slot()
        if free is None:
            raise HsmError(f"init token {label!r}: no free slot in {library.path}")
        library.init_token(free, label, so_pin)
        # SoftHSM renumbers slots after C_InitToken: find the token again by label.
        slot = find_slot(library, label)
        session = library.open(slot.slot, label)
        logged_in = False
        try:
            session.login(so_pin, so=True)
            logged_in = True
            session.init_pin(pin)
        finally:
            _close_quietly(session, logged_in)
        log.info("initialised token %s (serial %s)", label, slot.serial)
        return "created"
    finally:
        release(library)


def _check_existing(library: Library, label: str, existing: list[TokenSlot], pin: str) -> None:
    if len(existing) > 1:
        raise HsmError(f"init token {label!r}: {len(existing)} tokens already carry this label")
    slot = existing[0]
    if not slot.user_pin_initialized:
        raise HsmError(
            f"init token {label!r}: a token with this label exists but has no user PIN; refusing to touch it"
        )
    session = library.open(slot.slot, label)
    logged_in = False
    try:
        session.login(pin)
        logged_in = True
    except P11Failure as exc:
        if exc.code == CKR_USER_ALREADY_LOGGED_IN:
            return
        if exc.code == CKR_PIN_INCORRECT:
            raise HsmError(
                f"init token {label!r}: a token with this label exists and the PIN does not open it; "
                "refusing to re-initialise it"
            ) from None
        raise
    finally:
        _close_quietly(session, logged_in)


def key_info(session: Session, locator: str) -> HsmKey:
    """Algorithm and size of a key in the token (RSA keys are reported as algorithm 8)."""
    cka_id = check_locator(locator)
    private = _find_one(session, CKO_PRIVATE_KEY, cka_id)
    if private is None:
        raise HsmError(f"key {locator} is not in token {session.token!r}")
    key_type = session.get_int(private, CKA_KEY_TYPE)
    if key_type == CKK_RSA:
        modulus = session.get_bytes(private, CKA_MODULUS) or b""
        return HsmKey(locator, ALG_RSASHA256, int.from_bytes(modulus, "big").bit_length())
    params = session.get_bytes(private, CKA_EC_PARAMS)
    if key_type == CKK_EC_EDWARDS and params == NAME_ED25519:
        return HsmKey(locator, ALG_ED25519, _CURVES[ALG_ED25519][1])
    for algorithm, (oid, bits, _size) in _CURVES.items():
        if params == oid:
            return HsmKey(locator, algorithm, bits)
    raise HsmError(f"key {locator} in token {session.token!r} has an unsupported type or curve")
