"""Typed wrapper over PyKCS11: the only module that touches its untyped API.

Everything PKCS#11 that ods-duo does goes through `Session` here, so that
- every failure becomes an HsmError naming the operation, the token and the CKR_ code;
- the rest of the package is checked by mypy --strict without sprinkling ignores.

Library life cycle: SoftHSM reads SOFTHSM2_CONF in C_Initialize only, so one
process sees one token directory while the library is initialised. `acquire`
loads and initialises the module on first use and `release` finalises and
unloads it when the last user leaves; the next use reads SOFTHSM2_CONF again.
While the module is in use, a different SOFTHSM2_CONF is refused instead of
silently talking to the wrong token directory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NewType, ParamSpec, TypeVar

import PyKCS11  # type: ignore[import-untyped]

from duo_ods.errors import HsmError

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

# An object handle as PyKCS11 returns it; opaque to the rest of the package.
Handle = NewType("Handle", object)
# A nested attribute list is the value of CKA_UNWRAP_TEMPLATE (PyKCS11 takes a list of pairs).
AttrValue = int | bool | bytes | str | list[tuple[int, "AttrValue"]]
Template = Sequence[tuple[int, AttrValue]]

# The PKCS#11 constants the package uses, typed once here.
CKA_CLASS: int = PyKCS11.CKA_CLASS
CKA_TOKEN: int = PyKCS11.CKA_TOKEN
CKA_PRIVATE: int = PyKCS11.CKA_PRIVATE
CKA_LABEL: int = PyKCS11.CKA_LABEL
CKA_ID: int = PyKCS11.CKA_ID
CKA_KEY_TYPE: int = PyKCS11.CKA_KEY_TYPE
CKA_VALUE: int = PyKCS11.CKA_VALUE
CKA_VALUE_LEN: int = PyKCS11.CKA_VALUE_LEN
CKA_SENSITIVE: int = PyKCS11.CKA_SENSITIVE
CKA_EXTRACTABLE: int = PyKCS11.CKA_EXTRACTABLE
CKA_SIGN: int = PyKCS11.CKA_SIGN
CKA_VERIFY: int = PyKCS11.CKA_VERIFY
CKA_ENCRYPT: int = PyKCS11.CKA_ENCRYPT
CKA_DECRYPT: int = PyKCS11.CKA_DECRYPT
CKA_WRAP: int = PyKCS11.CKA_WRAP
CKA_UNWRAP: int = PyKCS11.CKA_UNWRAP
CKA_MODULUS: int = PyKCS11.CKA_MODULUS
CKA_MODULUS_BITS: int = PyKCS11.CKA_MODULUS_BITS
CKA_PUBLIC_EXPONENT: int = PyKCS11.CKA_PUBLIC_EXPONENT
CKA_EC_PARAMS: int = PyKCS11.CKA_EC_PARAMS
CKA_EC_POINT: int = PyKCS11.CKA_EC_POINT
CKA_DERIVE: int = PyKCS11.CKA_DERIVE
CKA_TRUSTED: int = PyKCS11.CKA_TRUSTED
CKA_WRAP_WITH_TRUSTED: int = PyKCS11.CKA_WRAP_WITH_TRUSTED
CKA_UNWRAP_TEMPLATE: int = PyKCS11.CKA_UNWRAP_TEMPLATE
CKA_MODIFIABLE: int = PyKCS11.CKA_MODIFIABLE
CKA_COPYABLE: int = PyKCS11.CKA_COPYABLE
CKA_DESTROYABLE: int = PyKCS11.CKA_DESTROYABLE
CKA_ALWAYS_SENSITIVE: int = PyKCS11.CKA_ALWAYS_SENSITIVE
CKA_NEVER_EXTRACTABLE: int = PyKCS11.CKA_NEVER_EXTRACTABLE

CKO_PUBLIC_KEY: int = PyKCS11.CKO_PUBLIC_KEY
CKO_PRIVATE_KEY: int = PyKCS11.CKO_PRIVATE_KEY
CKO_SECRET_KEY: int = PyKCS11.CKO_SECRET_KEY

CKK_RSA: int = PyKCS11.CKK_RSA
CKK_EC: int = PyKCS11.CKK_EC
CKK_EC_EDWARDS: int = PyKCS11.CKK_EC_EDWARDS
CKK_AES: int = PyKCS11.CKK_AES
CKK_GENERIC_SECRET: int = PyKCS11.CKK_GENERIC_SECRET

CKM_RSA_PKCS_KEY_PAIR_GEN: int = PyKCS11.CKM_RSA_PKCS_KEY_PAIR_GEN
CKM_EC_KEY_PAIR_GEN: int = PyKCS11.CKM_EC_KEY_PAIR_GEN
CKM_EC_EDWARDS_KEY_PAIR_GEN: int = PyKCS11.CKM_EC_EDWARDS_KEY_PAIR_GEN
CKM_AES_KEY_GEN: int = PyKCS11.CKM_AES_KEY_GEN
CKM_AES_ECB: int = PyKCS11.CKM_AES_ECB
CKM_AES_KEY_WRAP: int = PyKCS11.CKM_AES_KEY_WRAP
CKM_AES_KEY_WRAP_PAD: int = PyKCS11.CKM_AES_KEY_WRAP_PAD
CKM_SHA256_RSA_PKCS: int = PyKCS11.CKM_SHA256_RSA_PKCS
CKM_SHA512_RSA_PKCS: int = PyKCS11.CKM_SHA512_RSA_PKCS
CKM_ECDSA: int = PyKCS11.CKM_ECDSA
CKM_EDDSA: int = PyKCS11.CKM_EDDSA

CKR_PIN_INCORRECT: int = PyKCS11.CKR_PIN_INCORRECT
CKR_USER_ALREADY_LOGGED_IN: int = PyKCS11.CKR_USER_ALREADY_LOGGED_IN
CKR_KEY_NOT_WRAPPABLE: int = PyKCS11.CKR_KEY_NOT_WRAPPABLE
CKR_USER_ANOTHER_ALREADY_LOGGED_IN: int = PyKCS11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN

_CKF_TOKEN_INITIALIZED: int = PyKCS11.CKF_TOKEN_INITIALIZED
_CKF_USER_PIN_INITIALIZED: int = PyKCS11.CKF_USER_PIN_INITIALIZED
_CKF_RW_SESSION: int = PyKCS11.CKF_RW_SESSION
_CKU_SO: int = PyKCS11.CKU_SO
_CKU_USER: int = PyKCS11.CKU_USER


def ckr_name(code: int) -> str:
    """CKR_ name of a PKCS#11 return value (or PyKCS11's text for its own codes)."""
    name = PyKCS11.CKR.get(code)
    return name if isinstance(name, str) else f"CKR 0x{code:08X}"


class P11Failure(HsmError):
    """An HsmError that keeps the PKCS#11 return value for callers that branch on it."""

    def __init__(self, operation: str, token: str, code: int) -> None:
        self.operation = operation
        self.token = token
        self.code = code
        where = f" on token {token!r}" if token else ""
        super().__init__(f"{operation}{where} failed: {ckr_name(code)}")


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Prefix PKCS#11 failures inside the block with what the caller was doing."""
    try:
        yield
    except P11Failure as exc:
        raise P11Failure(f"{what}: {exc.operation}", exc.token, exc.code) from None


def _call(operation: str, token: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except PyKCS11.PyKCS11Error as exc:
        raise P11Failure(operation, token, int(exc.value)) from None


@dataclass(frozen=True)
class TokenSlot:
    """An initialised token found in a slot."""

    slot: int
    label: str
    serial: str
    user_pin_initialized: bool


# Loaded modules: path -> (PyKCS11Lib, SOFTHSM2_CONF at C_Initialize, users).
_loaded: dict[str, tuple[Any, str | None, int]] = {}
_lock = threading.Lock()


class Library:
    """One initialised PKCS#11 module; get it with `acquire`, give it back with `release`."""

    def __init__(self, path: str, lib: Any) -> None:
        self.path = path
        self._lib = lib

    def _slots(self) -> list[tuple[int, Any]]:
        slots = _call("C_GetSlotList", "", self._lib.getSlotList, tokenPresent=True)
        return [(int(slot), _call("C_GetTokenInfo", "", self._lib.getTokenInfo, slot)) for slot in slots]

    def tokens(self) -> list[TokenSlot]:
        """Every initialised token (uninitialised slots are left out)."""
        found: list[TokenSlot] = []
        for slot, info in self._slots():
            flags = int(info.flags)
            if flags & _CKF_TOKEN_INITIALIZED:
                found.append(
                    TokenSlot(
                        slot=slot,
                        label=str(info.label).rstrip(" \0"),
                        serial=str(info.serialNumber).strip(),
                        user_pin_initialized=bool(flags & _CKF_USER_PIN_INITIALIZED),
                    )
                )
        return found

    def free_slot(self) -> int | None:
        """A slot whose token is present but not initialised (SoftHSM always keeps one)."""
        for slot, info in self._slots():
            if not int(info.flags) & _CKF_TOKEN_INITIALIZED:
                return slot
        return None

    def mechanisms(self, slot: int) -> set[str]:
        names = _call("C_GetMechanismList", "", self._lib.getMechanismList, slot)
        return {str(name) for name in names}

    def init_token(self, slot: int, label: str, so_pin: str) -> None:
        # C_InitToken copies 32 bytes: PyKCS11 passes a C string, so pad with blanks
        # ourselves (else the label is "A" + NUL + junk and OpenDNSSEC, which compares
        # the blank-padded label, never finds the token).
        padded = label + " " * (32 - len(label.encode()))
        _call("C_InitToken", label, self._lib.initToken, slot, so_pin, padded)

    def open(self, slot: int, token: str) -> Session:
        raw = _call(
            "C_OpenSession",
            token,
            self._lib.openSession,
            slot,
            _CKF_RW_SESSION,
        )
        session = Session(raw, token)
        session.mechanisms = frozenset(self.mechanisms(slot))
        return session


def acquire(path: str) -> Library:
    """Load and C_Initialize the module at `path`, or share the copy already in use."""
    conf = os.environ.get("SOFTHSM2_CONF")
    with _lock:
        if path in _loaded:
            lib, loaded_conf, users = _loaded[path]
            if loaded_conf != conf:
                raise HsmError(
                    f"load {path}: SOFTHSM2_CONF is {conf!r} but the module is already "
                    f"initialised with {loaded_conf!r} in this process"
                )
            _loaded[path] = (lib, loaded_conf, users + 1)
            return Library(path, lib)
        try:
            lib = PyKCS11.PyKCS11Lib().load(path)
        except PyKCS11.PyKCS11Error as exc:
            raise HsmError(f"load PKCS#11 module {path} failed: {exc}") from None
        _loaded[path] = (lib, conf, 1)
        log.debug("loaded PKCS#11 module %s (SOFTHSM2_CONF=%s)", path, conf)
        return Library(path, lib)


def release(library: Library) -> None:
    """Give back a module from `acquire`; the last user finalises and unloads it."""
    with _lock:
        lib, conf, users = _loaded[library.path]
        if users > 1:
            _loaded[library.path] = (lib, conf, users - 1)
            return
        del _loaded[library.path]
        # C_Finalize + dlclose: the next acquire re-reads SOFTHSM2_CONF.
        lib.unload()
        log.debug("unloaded PKCS#11 module %s", library.path)


def _to_bytes(value: Any) -> bytes:
    return bytes(value)


class Mechanism:
    """A CK_MECHANISM; `oaep_sha1` builds the one RSA-OAEP variant SoftHSM 2.6.1 accepts."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    @classmethod
    def plain(cls, mechanism: int) -> Mechanism:
        # No parameter: pParameter NULL, as CKM_AES_KEY_WRAP(_PAD) requires in SoftHSM.
        return cls(PyKCS11.Mechanism(mechanism, None))

    @classmethod
    def oaep_sha1(cls) -> Mechanism:
        return cls(PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA_1, PyKCS11.CKG_MGF1_SHA1))


@dataclass
class ObjectIndex:
    """The token's key objects read once (keys.index_objects): private and public keys by
    (CKA_CLASS, CKA_ID), secret keys by CKA_LABEL. Kept current by the keys module's own
    creates and destroys; valid while nothing else changes the token (key work holds the key lock)."""

    by_id: dict[tuple[int, bytes], list[Handle]]
    secret_by_label: dict[str, list[Handle]]


class Session:
    """A logged-in read/write session on one token. Methods raise HsmError on failure."""

    def __init__(self, raw: Any, token: str) -> None:
        self._raw = raw
        self.token = token
        # Names (CKM_...) the token offers; filled in by Library.open.
        self.mechanisms: frozenset[str] = frozenset()
        # Results of capability probes (keys.can_wrap), kept for the life of the session.
        self.probes: dict[str, bool] = {}
        # An index of the token's key objects, when a batch built one (keys.index_objects).
        self.index: ObjectIndex | None = None

    # -- session state ---------------------------------------------------------------------
    def login(self, pin: str, *, so: bool = False) -> None:
        user = _CKU_SO if so else _CKU_USER
        _call("C_Login", self.token, self._raw.login, pin, user)

    def logout(self) -> None:
        _call("C_Logout", self.token, self._raw.logout)

    def close(self) -> None:
        _call("C_CloseSession", self.token, self._raw.closeSession)

    def init_pin(self, pin: str) -> None:
        _call("C_InitPIN", self.token, self._raw.initPin, pin)

    # -- objects ---------------------------------------------------------------------------
    def find(self, template: Template) -> list[Handle]:
        found = _call("C_FindObjects", self.token, self._raw.findObjects, list(template))
        return [Handle(h) for h in found]

    def create(self, template: Template, operation: str = "C_CreateObject") -> Handle:
        raw = _call(operation, self.token, self._raw.createObject, list(template))
        return Handle(raw)

    def set_attributes(self, handle: Handle, template: Template) -> None:
        _call("C_SetAttributeValue", self.token, self._raw.setAttributeValue, handle, list(template))

    def destroy(self, handle: Handle) -> None:
        _call("C_DestroyObject", self.token, self._raw.destroyObject, handle)

    def _get(self, handle: Handle, attrs: Sequence[int]) -> list[Any]:
        values = _call(
            "C_GetAttributeValue",
            self.token,
            self._raw.getAttributeValue,
            handle,
            list(attrs),
        )
        return list(values)

    def get_bytes(self, handle: Handle, attr: int) -> bytes | None:
        """Attribute as bytes; None when the object does not have it (or it is sensitive)."""
        (value,) = _call(
            "C_GetAttributeValue",
            self.token,
            self._raw.getAttributeValue,
            handle,
            [attr],
            allAsBinary=True,
        )
        return None if value is None else _to_bytes(value)

    def get_int(self, handle: Handle, attr: int) -> int | None:
        (value,) = self._get(handle, [attr])
        return None if value is None else int(value)

    def get_bool(self, handle: Handle, attr: int) -> bool | None:
        (value,) = self._get(handle, [attr])
        return None if value is None else bool(value)

    # -- key management --------------------------------------------------------------------
    def generate_key_pair(self, mechanism: int, public: Template, private: Template) -> tuple[Handle, Handle]:
        pub, priv = _call(
            "C_GenerateKeyPair",
            self.token,
            self._raw.generateKeyPair,
            list(public),
            list(private),
            Mechanism.plain(mechanism).raw,
        )
        return Handle(pub), Handle(priv)

    def generate_key(self, mechanism: int, template: Template) -> Handle:
        raw = _call(
            "C_GenerateKey",
            self.token,
            self._raw.generateKey,
            list(template),
            Mechanism.plain(mechanism).raw,
        )
        return Handle(raw)

    def wrap(self, wrapping_key: Handle, key: Handle, mechanism: Mechanism) -> bytes:
        blob = _call(
            "C_WrapKey",
            self.token,
            self._raw.wrapKey,
            wrapping_key,
            key,
            mechanism.raw,
        )
        return _to_bytes(blob)

    def unwrap(self, unwrapping_key: Handle, blob: bytes, template: Template, mechanism: Mechanism) -> Handle:
        raw = _call(
            "C_UnwrapKey",
            self.token,
            self._raw.unwrapKey,
            unwrapping_key,
            blob,
            list(template),
            mechanism.raw,
        )
        return Handle(raw)

    # -- crypto ----------------------------------------------------------------------------
    def sign(self, key: Handle, data: bytes, mechanism: int) -> bytes:
        sig = _call(
            "C_Sign",
            self.token,
            self._raw.sign,
            key,
            data,
            Mechanism.plain(mechanism).raw,
        )
        return _to_bytes(sig)

    def verify(self, key: Handle, data: bytes, signature: bytes, mechanism: int) -> bool:
        ok = _call(
            "C_Verify",
            self.token,
            self._raw.verify,
            key,
            data,
            PyKCS11.ckbytelist(signature),
            Mechanism.plain(mechanism).raw,
        )
        return bool(ok)

    def encrypt(self, key: Handle, data: bytes, mechanism: int) -> bytes:
        out = _call("C_Encrypt", self.token, self._raw.encrypt, key, data, Mechanism.plain(mechanism).raw)
        return _to_bytes(out)

    def decrypt(self, key: Handle, data: bytes, mechanism: int) -> bytes:
        out = _call("C_Decrypt", self.token, self._raw.decrypt, key, data, Mechanism.plain(mechanism).raw)
        return _to_bytes(out)

    def random(self, size: int) -> bytes:
        data = _call("C_GenerateRandom", self.token, self._raw.generateRandom, size)
        return _to_bytes(data)
