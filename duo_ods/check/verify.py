"""Signature verification with a cache, so no signature is verified twice under the same key set."""

from __future__ import annotations

import hashlib

import dns.dnssec
import dns.exception
import dns.name
import dns.rrset
from dns.rdtypes.ANY.RRSIG import RRSIG


def keyset_id(dnskeys: dns.rrset.RRset) -> str:
    """Identity of a DNSKEY RRset by content (owner and rdata, order-free)."""
    parts = sorted(rd.to_digestable(dnskeys.name) for rd in dnskeys)
    return hashlib.sha256(dnskeys.name.to_digestable() + b"".join(parts)).hexdigest()


class Verifier:
    """Verifies (RRset, RRSIG) pairs under key sets; identical key sets share results."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes, bytes], str | None] = {}
        self.verified = 0  # real cryptographic verifications done

    def check(self, rrset: dns.rrset.RRset, sig: RRSIG, dnskeys: dns.rrset.RRset, now: float) -> str | None:
        """None when the signature is valid under the key set, else why not."""
        data = b"".join(sorted(rd.to_digestable(rrset.name) for rd in rrset))
        key = (keyset_id(dnskeys), rrset.name.to_digestable() + data, sig.to_digestable(rrset.name))
        if key in self._cache:
            return self._cache[key]
        self.verified += 1
        try:
            dns.dnssec.validate_rrsig(rrset, sig, {dnskeys.name: dnskeys}, now=now)
            result = None
        except dns.exception.ValidationFailure as exc:
            result = str(exc)
        self._cache[key] = result
        return result
