"""What each key object in a token allows: the custody attributes, read from the token itself.

`custody_report` lists every key object (DNSSEC keys, KEKs, transport and trusted keys) with
the attributes that decide whether it can leave the token or be misused; `custody_problems`
checks them against the rules of docs/security.md, for tests and `backup verify`. Both only
read; nothing here changes a token. Values are what the token reports (None: the attribute
does not apply to that object class, or the token did not say).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any, Literal

from duo_ods.hsm._p11 import (
    CKA_ALWAYS_SENSITIVE,
    CKA_CLASS,
    CKA_COPYABLE,
    CKA_DECRYPT,
    CKA_DERIVE,
    CKA_DESTROYABLE,
    CKA_ENCRYPT,
    CKA_EXTRACTABLE,
    CKA_ID,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_MODIFIABLE,
    CKA_NEVER_EXTRACTABLE,
    CKA_PRIVATE,
    CKA_SENSITIVE,
    CKA_SIGN,
    CKA_TOKEN,
    CKA_TRUSTED,
    CKA_UNWRAP,
    CKA_UNWRAP_TEMPLATE,
    CKA_WRAP,
    CKA_WRAP_WITH_TRUSTED,
    CKK_AES,
    CKK_EC,
    CKK_EC_EDWARDS,
    CKK_GENERIC_SECRET,
    CKK_RSA,
    CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY,
    CKO_SECRET_KEY,
    Handle,
    Session,
)
from duo_ods.hsm.kek import RETIRED_INFIX

Role = Literal["dnssec", "kek", "retired-kek", "transport", "trusted-transport", "public", "other"]

_CLASSES = {CKO_PRIVATE_KEY: "private", CKO_SECRET_KEY: "secret", CKO_PUBLIC_KEY: "public"}
_TYPES = {
    CKK_RSA: "RSA",
    CKK_EC: "EC",
    CKK_EC_EDWARDS: "EC_EDWARDS",
    CKK_AES: "AES",
    CKK_GENERIC_SECRET: "GENERIC",
}


@dataclass(frozen=True)
class ObjectCustody:
    """One key object and its custody attributes as the token reports them."""

    label: str
    object_class: str  # private | secret | public
    key_type: str
    cka_id: str  # hex
    role: Role
    private: bool | None  # CKA_PRIVATE: needs a login to be seen or used
    sensitive: bool | None
    extractable: bool | None
    always_sensitive: bool | None
    never_extractable: bool | None
    wrap_with_trusted: bool | None
    trusted: bool | None
    copyable: bool | None
    modifiable: bool | None
    destroyable: bool | None
    wrap: bool | None
    unwrap: bool | None
    encrypt: bool | None
    decrypt: bool | None
    sign: bool | None
    derive: bool | None
    unwrap_template: bool  # carries a CKA_UNWRAP_TEMPLATE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _role(object_class: str, label: str, cka_id: bytes, kek_label: str, trusted: bool | None) -> Role:
    if object_class == "secret":
        if label == kek_label:
            return "kek"
        if label.startswith(f"{kek_label}{RETIRED_INFIX}"):
            return "retired-kek"
        return "other"
    ods_style = len(cka_id) == 16 and label == cka_id.hex()  # ODS's CKA_ID: 16 bytes
    if object_class == "private":
        return "dnssec" if ods_style else "transport"
    if trusted:
        return "trusted-transport"
    return "public"


def _read(session: Session, handle: Handle, kek_label: str) -> ObjectCustody | None:
    if session.get_bool(handle, CKA_TOKEN) is not True:
        return None  # a session object: gone when its session ends, not part of the token
    class_code = session.get_int(handle, CKA_CLASS)
    object_class = _CLASSES.get(class_code if class_code is not None else -1)
    if object_class is None:
        return None
    label = (session.get_bytes(handle, CKA_LABEL) or b"").decode(errors="replace")
    cka_id = session.get_bytes(handle, CKA_ID) or b""
    type_code = session.get_int(handle, CKA_KEY_TYPE)
    trusted = session.get_bool(handle, CKA_TRUSTED)

    def flag(attr: int) -> bool | None:
        return session.get_bool(handle, attr)

    return ObjectCustody(
        label=label,
        object_class=object_class,
        key_type=_TYPES.get(type_code if type_code is not None else -1, "other"),
        cka_id=cka_id.hex(),
        role=_role(object_class, label, cka_id, kek_label, trusted),
        private=flag(CKA_PRIVATE),
        sensitive=flag(CKA_SENSITIVE),
        extractable=flag(CKA_EXTRACTABLE),
        always_sensitive=flag(CKA_ALWAYS_SENSITIVE),
        never_extractable=flag(CKA_NEVER_EXTRACTABLE),
        wrap_with_trusted=flag(CKA_WRAP_WITH_TRUSTED),
        trusted=trusted,
        copyable=flag(CKA_COPYABLE),
        modifiable=flag(CKA_MODIFIABLE),
        destroyable=flag(CKA_DESTROYABLE),
        wrap=flag(CKA_WRAP),
        unwrap=flag(CKA_UNWRAP),
        encrypt=flag(CKA_ENCRYPT),
        decrypt=flag(CKA_DECRYPT),
        sign=flag(CKA_SIGN),
        derive=flag(CKA_DERIVE),
        unwrap_template=bool(session.get_bytes(handle, CKA_UNWRAP_TEMPLATE)),
    )


def custody_report(session: Session, kek_label: str) -> list[ObjectCustody]:
    """Every private, secret and public key token object the session can see, with its custody attributes."""
    report: list[ObjectCustody] = []
    for object_class in (CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY):
        for handle in session.find([(CKA_CLASS, object_class)]):
            entry = _read(session, handle, kek_label)
            if entry is not None:
                report.append(entry)
    return sorted(report, key=lambda e: (e.role, e.object_class, e.label))


def _sealed_kek_rules(entry: ObjectCustody, holder: bool) -> list[str]:
    wrong = []
    if entry.sensitive is not True:
        wrong.append("not sensitive")
    wrong += [f"{name} is not false" for name in _KEK_OFF if getattr(entry, name) is not False]
    if not entry.unwrap_template:
        wrong.append("no unwrap template (what it unwraps could come out readable)")
    if entry.private is not True:
        wrong.append("a public object (SoftHSM stores its value in clear)")
    if entry.extractable is not False:
        if not holder:
            wrong.append("extractable on a node")
        elif entry.wrap_with_trusted is not True:
            wrong.append("extractable to any key (no CKA_WRAP_WITH_TRUSTED)")
    if entry.role == "retired-kek" and entry.wrap is not False:
        wrong.append("a retired KEK that still wraps")
    return wrong


_KEK_OFF = ("encrypt", "decrypt", "sign", "derive", "copyable", "modifiable")
_DNSSEC_OFF = ("copyable", "derive", "decrypt", "unwrap")


def _dnssec_rules(entry: ObjectCustody, open_keys: Collection[str]) -> list[str]:
    wrong = [f"{name} is not false" for name in _DNSSEC_OFF if getattr(entry, name) is not False]
    if entry.sensitive is not True:
        wrong.append("not sensitive")
    if entry.extractable is not False and entry.label not in open_keys:
        wrong.append("extractable (not sealed)")
    return wrong


def _other_rules(entry: ObjectCustody, holder: bool) -> list[str]:
    if entry.role == "transport":
        wrong = []
        if entry.extractable is not False or entry.sensitive is not True:
            wrong.append("extractable or not sensitive")
        if entry.unwrap and not entry.unwrap_template:
            wrong.append("unwraps without an unwrap template")
        return wrong
    if entry.role == "trusted-transport":
        wrong = [] if holder else ["a trusted key on a node token (nodes never hand the KEK on)"]
        return [*wrong, "modifiable"] if entry.modifiable is not False else wrong
    if entry.role == "other" and (entry.extractable or entry.sensitive is False):
        return ["a secret key that can leave the token"]
    return []


def custody_problems(
    report: list[ObjectCustody], *, holder: bool, open_keys: Collection[str] = ()
) -> list[str]:
    """What in `report` breaks the custody rules; empty when the token is in its sealed state.

    `holder` is true for the backup token (its KEKs may be extractable, to trusted keys
    only) and false for a signer's token (nothing extractable, no trusted keys). `open_keys`
    are the locators of DNSSEC keys still in their copy window (extractable allowed).
    """
    problems: list[str] = []
    for entry in report:
        if entry.role == "dnssec":
            wrong = _dnssec_rules(entry, open_keys)
        elif entry.role in ("kek", "retired-kek"):
            wrong = _sealed_kek_rules(entry, holder)
        else:
            wrong = _other_rules(entry, holder)
        if wrong:
            problems.append(f"{entry.role} {entry.object_class} {entry.label!r}: {', '.join(wrong)}")
    return problems
