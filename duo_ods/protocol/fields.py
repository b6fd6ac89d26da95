"""What every node request and reply is built from: one message base, and field types that check
themselves on the receiving side.

A node trusts nothing from the wire (invariant 8): a zone name must be a zone name (the same
normaliser the controller uses, so `../../x` never becomes a path), a locator 32 lowercase hex
digits, binary data valid base64 of a bounded size, zone text bounded. pydantic validates
every request before a handler sees it, and every reply before the controller uses it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import ZoneFileError

MAX_ZONE_TEXT = 256 * 1024 * 1024  # bytes of one zone's text in a request (the checker's own limit is lower)
MAX_BLOB = 64 * 1024  # a wrapped key, a public key, a wrapped KEK: a few KB at most
MAX_PAYLOAD = 512 * 1024 * 1024  # one request on the wire, all zones of a batch together


class Message(BaseModel):
    """A request or reply: immutable, and no field the protocol does not declare.

    Lax, not strict, type checking: JSON has no tuples, and a number may arrive as 5.0; the
    field types below (patterns, ranges, lengths) are what keeps hostile values out.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


def _zone_name(value: str) -> str:
    try:
        normal = normalize_zone_name(value)
    except ZoneFileError as exc:
        raise ValueError(str(exc)) from None
    if normal != value:
        raise ValueError(f"zone name {value!r} is not in canonical form ({normal!r})")
    return value


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    return value


ZoneName = Annotated[str, AfterValidator(_zone_name)]
Locator = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")]
Base64 = Annotated[str, StringConstraints(max_length=MAX_BLOB * 4 // 3 + 4), AfterValidator(_base64)]
ZoneText = Annotated[str, StringConstraints(max_length=MAX_ZONE_TEXT)]
KeyRole = Annotated[str, StringConstraints(pattern=r"^(KSK|ZSK|CSK)$")]
Algorithm = Annotated[int, Field(ge=1, le=255)]
Bits = Annotated[int, Field(ge=0, le=16384)]
Epoch = Annotated[int, Field(ge=0, lt=2**40)]
Serial = Annotated[int, Field(ge=0, lt=2**32)]
