"""DS records to check a zone's copies against: given with `--ds` (what the parent has), parsed and
refused here, and matched against a copy's DNSKEY RRset (pure).

`--ds` means "check against what the parent has": every copy (each signer, each secondary, each
--source) must have its DNSKEY RRset signed by a key that one of the given DS records points to,
as a validating resolver needs. It adds to the check against the enforcers' own KSKs, which runs
as well: the two answer different questions (is the parent's DS right; are the copies signed by the
keys the enforcers run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

from duo_ods.errors import DuoError
from duo_ods.keys.dnssec import ZONE_KEY, keytag, make_ds

# The digest types a DS may use (RFC 4034, 4509, 6605); GOST (3) and the rest are refused.
DIGESTS: Mapping[int, str] = {1: "SHA1", 2: "SHA256", 4: "SHA384"}


class DsError(DuoError):
    """A --ds value that is not a DS record for a zone being checked."""


@dataclass(frozen=True)
class ParentDs:
    """One DS record the operator gave, and the text it came from."""

    zone: str  # lowercase, without the trailing dot (as zones are named everywhere else)
    rdata: DS
    text: str

    @property
    def key_tag(self) -> int:
        return int(self.rdata.key_tag)


def _zone_name(name: dns.name.Name) -> str:
    text = name.to_text().lower()
    return text if text == "." else text.rstrip(".")


def parse_ds(text: str) -> ParentDs:
    """'ZONE. [TTL] [IN] DS KEYTAG ALGORITHM DIGESTTYPE DIGEST', as `key ds` prints it."""
    fields = text.split()
    problem = "expected 'ZONE. [TTL] [IN] DS KEYTAG ALGORITHM DIGESTTYPE DIGEST'"
    at = next((i for i, f in enumerate(fields) if i and f.upper() == "DS"), None)
    if at is None:
        raise DsError(f"--ds {text!r}: not a DS record ({problem})")
    head, rdata_text = fields[:at], " ".join(fields[at + 1 :])
    extra = [f for f in head[1:] if not f.isdigit() and f.upper() != "IN"]
    if len(head) < 1 or len(head) > 3 or extra:
        raise DsError(f"--ds {text!r}: not a DS record ({problem})")
    try:
        owner = dns.name.from_text(head[0])
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, rdata_text)
    except (dns.exception.DNSException, ValueError) as exc:
        raise DsError(f"--ds {text!r}: not a DS record: {exc}") from None
    assert isinstance(rdata, DS)
    if rdata.digest_type not in DIGESTS:
        known = ", ".join(f"{n} ({name})" for n, name in DIGESTS.items())
        raise DsError(f"--ds {text!r}: digest type {rdata.digest_type} is not one of {known}")
    return ParentDs(_zone_name(owner), rdata, text)


def parse_ds_options(texts: Iterable[str], zones: Sequence[str] | None) -> dict[str, list[ParentDs]]:
    """The --ds values by zone. With `zones` (the zones being checked), a DS for any other zone
    is refused: it would silently check nothing."""
    by_zone: dict[str, list[ParentDs]] = {}
    for text in texts:
        ds = parse_ds(text)
        by_zone.setdefault(ds.zone, []).append(ds)
    if zones is not None:
        refuse_other_zones(by_zone, zones)
    return by_zone


def refuse_other_zones(by_zone: Mapping[str, Sequence[ParentDs]], zones: Sequence[str]) -> None:
    for zone, records in by_zone.items():
        if zone not in zones:
            checked = ", ".join(zones) if zones else "none"
            raise DsError(
                f"--ds {records[0].text!r}: a DS for {zone}, not for a zone being checked ({checked})"
            )


def points_to(ds: DS, owner: dns.name.Name, key: DNSKEY) -> bool:
    """Whether the DS is the digest of this DNSKEY (RFC 4034 5.1.4)."""
    # only a zone key (RFC 4034 2.1.1) validates a DS
    if ds.key_tag != keytag(key) or ds.algorithm != key.algorithm or not key.flags & ZONE_KEY:
        return False
    try:
        made = make_ds(owner, key, DIGESTS[ds.digest_type], validating=True)
    except (dns.exception.DNSException, ValueError, KeyError):
        return False
    return bool(made.digest == ds.digest)


def keys_pointed_to(ds_records: Sequence[DS], dnskeys: dns.rrset.RRset) -> set[int]:
    """The key tags of the DNSKEYs in the set that one of the DS records points to."""
    tags: set[int] = set()
    for key in dnskeys:
        assert isinstance(key, DNSKEY)
        if any(points_to(ds, dnskeys.name, key) for ds in ds_records):
            tags.add(keytag(key))
    return tags
