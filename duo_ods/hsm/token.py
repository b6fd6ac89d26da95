"""Tokens: find one by label, open a logged-in session on it.

The PKCS#11 module only sees the tokens of the configuration it was initialised
with (SoftHSM: SOFTHSM2_CONF, read at C_Initialize). Callers set SOFTHSM2_CONF in
the environment before the first call; the module is initialised per outermost
`open_session`/`open_so_session` and finalised when the last one ends, so a later call
may point at another token directory (see _p11.acquire).

PINs are arguments and go straight into C_Login/C_InitToken/C_InitPIN; they are
never logged or put on a command line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from duo_ods.errors import HsmError
from duo_ods.hsm._p11 import (
    CKR_USER_ALREADY_LOGGED_IN,
    CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    Library,
    P11Failure,
    Session,
    TokenSlot,
    acquire,
    release,
)

log = logging.getLogger(__name__)

__all__ = [
    "Session",
    "TokenSlot",
    "find_slot",
    "list_tokens",
    "open_session",
    "open_so_session",
]

MAX_LABEL_BYTES = 32  # CK_TOKEN_INFO.label is 32 bytes, blank padded


def _check_label(label: str) -> None:
    size = len(label.encode())
    if not label or size > MAX_LABEL_BYTES or label != label.strip():
        raise HsmError(f"token label {label!r}: need 1 to {MAX_LABEL_BYTES} bytes, no outer blanks")


def find_slot(library: Library, label: str) -> TokenSlot:
    """The one initialised token with this label; HsmError if none or several."""
    matches = [t for t in library.tokens() if t.label == label]
    if not matches:
        raise HsmError(f"no token labelled {label!r} in {library.path} (check SOFTHSM2_CONF)")
    if len(matches) > 1:
        serials = ", ".join(t.serial for t in matches)
        raise HsmError(f"{len(matches)} tokens labelled {label!r} in {library.path} (serials {serials})")
    return matches[0]


def list_tokens(module: str) -> list[TokenSlot]:
    """Every initialised token the module shows to this process."""
    library = acquire(module)
    try:
        return library.tokens()
    finally:
        release(library)


def _close_quietly(session: Session, logged_in: bool) -> None:
    # Runs while another exception may be in flight: report, never mask it.
    if logged_in:
        try:
            session.logout()
        except HsmError as exc:
            log.warning("%s", exc)
    try:
        session.close()
    except HsmError as exc:
        log.warning("%s", exc)


@contextmanager
def open_session(module: str, label: str, pin: str) -> Iterator[Session]:
    """A read/write session on token `label`, logged in as user for the duration of the block."""
    _check_label(label)
    library = acquire(module)
    try:
        slot = find_slot(library, label)
        session = library.open(slot.slot, label)
        owns_login = True
        try:
            try:
                session.login(pin)
            except P11Failure as exc:
                # PKCS#11 login is per token and process: a nested session on the same token
                # shares the outer login and must not log it out when it ends.
                if exc.code != CKR_USER_ALREADY_LOGGED_IN:
                    raise
                owns_login = False
            yield session
        finally:
            _close_quietly(session, owns_login)
    finally:
        release(library)


@contextmanager
def open_so_session(module: str, label: str, so_pin: str) -> Iterator[Session]:
    """A read/write session on token `label`, logged in as the Security Officer for the block.

    For the few acts only the SO may do (import a transport public key as CKA_TRUSTED).
    The SO sees and creates public objects only. PKCS#11 login is per token and process,
    so no user session of this process may be open on the token meanwhile: that is
    refused (CKR_USER_ANOTHER_ALREADY_LOGGED_IN) with a clear error instead of sharing it.
    """
    _check_label(label)
    library = acquire(module)
    try:
        slot = find_slot(library, label)
        session = library.open(slot.slot, label)
        logged_in = False
        try:
            try:
                session.login(so_pin, so=True)
            except P11Failure as exc:
                if exc.code in (CKR_USER_ANOTHER_ALREADY_LOGGED_IN, CKR_USER_ALREADY_LOGGED_IN):
                    raise HsmError(
                        f"SO login on token {label!r}: this process already has a session logged in "
                        "on it; close it first"
                    ) from None
                raise
            logged_in = True
            yield session
        finally:
            _close_quietly(session, logged_in)
    finally:
        release(library)
