"""A key bundle: everything needed to put one key into another HSM, and nothing in clear.

The private key travels and rests only wrapped under the duo's KEK
(CKM_AES_KEY_WRAP_PAD). The public key and metadata are not secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class KeyBundle:
    zone: str
    role: str  # KSK, ZSK or CSK
    algorithm: int
    bits: int
    locator: str  # CKA_ID as 32 lowercase hex: the same in every HSM and enforcer
    inception: int  # seconds since the epoch; every enforcer gets the same instant
    origin: str  # the node that made the key
    public: str  # DNSKEY public key field, base64
    wrapped: str  # private key wrapped under the KEK, base64
    kek: str  # fingerprint of the KEK it is wrapped under (not secret)
    keytag: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KeyBundle:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)

    @property
    def public_bytes(self) -> bytes:
        return base64.b64decode(self.public)

    @property
    def wrapped_bytes(self) -> bytes:
        return base64.b64decode(self.wrapped)

    def digest(self) -> str:
        """What the backup confirms it holds."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()
