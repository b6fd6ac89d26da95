"""What an attacker holding a token's user PIN would call, beyond the layer's own API.

PyKCS11 has no C_CopyObject, so it is called through ctypes on the same loaded module
(dlopen returns the library PyKCS11 initialised, so sessions and handles are shared).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import PyKCS11  # type: ignore[import-untyped]

from duo_ods.hsm._p11 import AttrValue, Handle, P11Failure, Session, ckr_name
from tests.integration.hsm.tokens import MODULE


class _Attribute(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("value", ctypes.c_void_p), ("length", ctypes.c_ulong)]


def copy_object(session: Session, handle: Handle, template: Sequence[tuple[int, AttrValue]]) -> str:
    """C_CopyObject with `template`; the CKR_ name it returned (the copy is destroyed if made)."""
    lib = ctypes.CDLL(MODULE)
    attributes = (_Attribute * max(1, len(template)))()
    buffers = []
    for i, (kind, value) in enumerate(template):
        if isinstance(value, bool):
            raw = bytes([1 if value else 0])
        elif isinstance(value, int):
            raw = value.to_bytes(ctypes.sizeof(ctypes.c_ulong), "little")
        elif isinstance(value, str):
            raw = value.encode()
        elif isinstance(value, bytes):
            raw = value
        else:
            raise TypeError(f"attribute {kind:#x}: {type(value)} not supported here")
        buffer = ctypes.create_string_buffer(raw, len(raw))
        buffers.append(buffer)
        attributes[i] = _Attribute(kind, ctypes.cast(buffer, ctypes.c_void_p), len(raw))
    made = ctypes.c_ulong()
    raw_session: Any = session._raw  # the attacker uses the library directly
    raw_handle: Any = handle
    rv = lib.C_CopyObject(
        ctypes.c_ulong(raw_session.session.value()),
        ctypes.c_ulong(raw_handle.value()),
        attributes,
        ctypes.c_ulong(len(template)),
        ctypes.byref(made),
    )
    if rv == 0:
        lib.C_DestroyObject(ctypes.c_ulong(raw_session.session.value()), made)
    return ckr_name(rv)


def derive(
    session: Session, base: Handle, mechanism: int, data: bytes, template: list[tuple[int, AttrValue]]
) -> Handle:
    """C_DeriveKey with a CK_KEY_DERIVATION_STRING_DATA parameter (the *_ENCRYPT_DATA mechanisms)."""
    raw: Any = session._raw
    mech = PyKCS11.KEY_DERIVATION_STRING_DATA_MechanismBase(data, mechanism)
    try:
        return Handle(raw.deriveKey(base, template, mech))
    except PyKCS11.PyKCS11Error as exc:
        raise P11Failure("C_DeriveKey", session.token, int(exc.value)) from None


@contextmanager
def refused(*codes: str) -> Iterator[None]:
    """The attack step in the block must fail with one of `codes` (CKR_ names)."""
    try:
        yield
    except P11Failure as exc:
        name = ckr_name(exc.code)
        assert name in codes, f"refused with {name}, expected one of {codes}"
        return
    raise AssertionError(f"the token allowed it (expected one of {codes})")
