"""The checks themselves: one copy of a zone on its own, and copies against each other (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cache
from typing import TypeVar

import dns.dnssec
import dns.exception
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

from duo_ods.check.ds import keys_pointed_to
from duo_ods.check.model import Problem, Severity, Thresholds, ZoneReport
from duo_ods.check.verify import KeySet, verify
from duo_ods.check.wire import Nsec3, Rrsig, decode_bitmap, encode_bitmap, parse_nsec3
from duo_ods.check.zoneview import RRset, ZoneView, ancestors, parent, record_text

_RT = dns.rdatatype.RdataType
T = TypeVar("T")
MAX_LISTED = 5  # name at most this many examples per finding; the count says the rest

_B32HEX_DIGITS = b"0123456789abcdefghijklmnopqrstuv"

Nsec3Params = tuple[int, bytes, int]  # iterations, salt, flags
MISSING = "<no covered RRset>"  # a result of verify_all: the RRSIG's RRset is not in the zone


def _names(items: Sequence[T], show: Callable[[T], str] = str) -> str:
    """The first few items, and how many more."""
    shown = ", ".join(show(i) for i in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _type(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


@dataclass
class SourceFindings:
    """All that the cross-source comparison and the report need of one copy: small, so it can
    come back from a worker process cheaply."""

    name: str
    problems: list[Problem] = field(default_factory=list)
    serial: int = 0
    signatures: int | None = None  # None: not counted (no DNSKEY RRset)
    soonest_expiration: int | None = None
    dnskeys: dns.rrset.RRset | None = None
    keyset: str | None = None
    own_failures: int = 0  # signatures over present RRsets that fail under this copy's own keys
    dnskey_sig_tags: frozenset[int] = frozenset()  # key tags of apex DNSKEY signatures valid under own keys
    nsec3: Nsec3Params | None = None
    data: frozenset[bytes] = frozenset()  # the unsigned records (zoneview.unsigned_records)

    def add(self, severity: Severity, message: str) -> None:
        self.problems.append(Problem(severity, self.name, message))


def verification_key(keys: KeySet, sig: Rrsig, rrset: RRset) -> bytes:
    """Identity of one verification: the same signature over the same data under the same keys."""
    h = hashlib.blake2b(keys.id.encode(), digest_size=16)
    h.update(sig.owner + sig.rdata + rrset.rdtype.to_bytes(2, "big"))
    for rdata in sorted(rrset.canonical):
        h.update(len(rdata).to_bytes(2, "big") + rdata)
    return h.digest()


def verify_all(
    view: ZoneView, keys: KeySet, now: float, known: frozenset[bytes] = frozenset(), record: bool = False
) -> tuple[list[str | None], set[bytes]]:
    """Every signature of the copy under `keys`: None (valid), why not, or MISSING. Verifications
    in `known` are valid without doing them again; with `record`, the valid ones are returned too."""
    results: list[str | None] = []
    valid: set[bytes] = set()
    for sig in view.data.rrsigs:
        rrset = view.covered(sig)
        if rrset is None:
            results.append(MISSING)
            continue
        if known or record:
            key = verification_key(keys, sig, rrset)
            if key in known:
                results.append(None)
                continue
            why = verify(sig, rrset, keys, now)
            if why is None and record:
                valid.add(key)
        else:
            why = verify(sig, rrset, keys, now)
        results.append(why)
    return results, valid


def count_failures(view: ZoneView, keys: KeySet, now: float) -> int:
    """Signatures over present RRsets that do not validate under `keys`."""
    failed = 0
    for sig in view.data.rrsigs:
        rrset = view.covered(sig)
        if rrset is not None and verify(sig, rrset, keys, now) is not None:
            failed += 1
    return failed


def check_signatures(view: ZoneView, results: Sequence[str | None] | None, found: SourceFindings) -> None:
    """Every authoritative RRset carries a signature valid under the source's own DNSKEY RRset;
    delegations and glue carry none. `results`: verify_all under the own keys."""
    if view.dnskeys is None or results is None:
        found.add("critical", "no DNSKEY RRset at the apex")
        return
    valid: set[tuple[bytes, int]] = set()
    bad: list[tuple[Rrsig, str]] = []
    wrongly_signed: list[Rrsig] = []
    for sig, why in zip(view.data.rrsigs, results, strict=True):
        owner = sig.owner
        if owner in view.occluded or (owner in view.delegations and sig.covered == _RT.NS):
            wrongly_signed.append(sig)
        elif why is None:
            valid.add((owner, sig.covered))
        else:
            bad.append((sig, why))
    unsigned = [r for r in view.signed_rrsets if (r.owner, r.rdtype) not in valid]

    def rrset(r: RRset) -> str:
        return f"{view.text(r.owner)} {_type(r.rdtype)}"

    def signature(item: tuple[Rrsig, str]) -> str:
        sig, why = item
        if why == MISSING:
            return f"{view.text(sig.owner)} RRSIG over a missing {_type(sig.covered)} RRset"
        return f"{view.text(sig.owner)} {_type(sig.covered)} (key tag {sig.key_tag}): {why}"

    if unsigned:
        found.add("critical", f"{len(unsigned)} RRsets without a valid signature: {_names(unsigned, rrset)}")
    if bad:
        found.add("critical", f"{len(bad)} signatures do not validate: {_names(bad, signature)}")
    if wrongly_signed:
        shown = _names(wrongly_signed, lambda sig: f"{view.text(sig.owner)} {_type(sig.covered)}")
        found.add("critical", f"delegation or glue data is signed: {shown}")
    found.signatures = len(view.data.rrsigs)


def _expected_nsec3_names(view: ZoneView) -> dict[bytes, frozenset[int]]:
    """Every name the chain must cover (authoritative names, delegations and empty non-terminals)
    with the types its bitmap must list."""
    present: dict[bytes, set[int]] = {}
    for owner, rdtype in view.data.rrsets:
        types = present.get(owner)
        if types is None:
            present[owner] = {rdtype}
        else:
            types.add(rdtype)
    signed = {sig.owner for sig in view.data.rrsigs}
    origin = view.origin
    expected: dict[bytes, frozenset[int]] = {}
    for name in view.data.names:
        if name in view.occluded or name in view.nsec3:
            continue
        types = present.get(name, set())
        types.discard(_RT.NSEC3)
        if name in signed:
            types.add(_RT.RRSIG)
        if name in view.delegations:
            types &= {_RT.NS, _RT.DS}
            if _RT.DS in types:
                types.add(_RT.RRSIG)
        elif types - {_RT.RRSIG}:
            types.add(_RT.RRSIG)
        expected[name] = frozenset(types)
        if name != origin and parent(name) != origin:
            for above in ancestors(name, origin):  # empty non-terminals between the name and the apex
                expected.setdefault(above, frozenset())
    return expected


def _nsec3_hash(name: bytes, nsec3: Nsec3) -> bytes:
    """As dns.dnssec.nsec3_hash (RFC 5155 5), of a canonical wire name."""
    digest = hashlib.sha1(name + nsec3.salt).digest()  # noqa: S324 (NSEC3 is SHA-1)
    for _ in range(nsec3.iterations):
        digest = hashlib.sha1(digest + nsec3.salt).digest()  # noqa: S324
    return digest


def _label_hash(owner: bytes) -> bytes | None:
    """The hash an NSEC3 owner's first label spells in base32hex (RFC 4648 7, no padding)."""
    label = owner[1 : 1 + owner[0]]
    if not label or len(label) * 5 % 8 or label.lower().translate(None, _B32HEX_DIGITS):
        return None
    return int(label, 32).to_bytes(len(label) * 5 // 8, "big")


@cache
def _bitmap(types: frozenset[int]) -> bytes:
    return encode_bitmap(types)


def _nsec3_coverage(
    view: ZoneView, records: Mapping[bytes, Nsec3], hashes: Mapping[bytes, bytes | None], first: Nsec3
) -> tuple[list[str], set[bytes]]:
    """Which names lack their NSEC3 or list the wrong types; and which NSEC3 owners are accounted for."""
    opt_out = bool(first.flags & 1)
    owners = {h: o for o, h in hashes.items() if h is not None and parent(o) == view.origin}
    problems: list[str] = []
    covered: set[bytes] = set()
    for name, types in _expected_nsec3_names(view).items():
        owner = owners.get(_nsec3_hash(name, first))
        if owner is None:
            if not (
                opt_out and name in view.delegations and _RT.DS not in types
            ):  # opt-out: insecure delegation
                problems.append(f"{view.text(name)} has no NSEC3")
            continue
        covered.add(owner)
        record = records[owner]
        if record.bitmap == _bitmap(types):
            continue
        try:
            listed = decode_bitmap(record.bitmap)
        except dns.exception.FormError:
            listed = set()
        if listed != types:
            missing = sorted(_type(t) for t in types - listed)
            extra = sorted(_type(t) for t in listed - types)
            problems.append(f"{view.text(name)} NSEC3 types differ (missing {missing}, extra {extra})")
    return problems, covered


def check_nsec3(view: ZoneView, found: SourceFindings) -> None:
    """The NSEC3 chain: one parameter set, every name covered with the right types, a closed ring.
    Notes the parameters (iterations, salt, flags) for the cross-source comparison."""
    param_set = view.data.rrsets.get((view.origin, _RT.NSEC3PARAM))
    if not view.nsec3:
        if param_set is not None:
            found.add("critical", "NSEC3PARAM published but no NSEC3 chain")
        return
    records = {owner: parse_nsec3(rrset.rdatas[0]) for owner, rrset in view.nsec3.items()}
    params = {(r.algorithm, r.iterations, r.salt) for r in records.values()}
    if len(params) != 1:
        found.add("critical", f"NSEC3 records use {len(params)} different parameter sets")
        return
    first = next(iter(records.values()))
    if param_set is None:
        found.add("critical", "NSEC3 chain without an NSEC3PARAM at the apex")
    elif param_set.ttl != 0:
        found.add("warning", f"NSEC3PARAM TTL is {param_set.ttl}, not 0: resolvers may cache one signer's")
    if first.algorithm != 1:
        found.add("critical", f"NSEC3 chain uses hash algorithm {first.algorithm}, not SHA-1 (1)")
        return
    hashes = {owner: _label_hash(owner) for owner in records}
    problems, covered = _nsec3_coverage(view, records, hashes, first)
    strays = [o for o in records if o not in covered]
    if strays:
        problems.append(f"{len(strays)} NSEC3 records match no name in the zone: {_names(strays, view.text)}")
    ring = sorted(records, key=lambda o: o[1 : 1 + o[0]])
    for owner, following in zip(ring, ring[1:] + ring[:1], strict=True):
        if records[owner].next != hashes[following]:
            problems.append(f"{view.text(owner)} next hashed owner does not point to the following NSEC3")
    if problems:
        found.add("critical", f"NSEC3 chain broken: {_names(problems)}")
    found.nsec3 = first.iterations, first.salt, first.flags


def _tags(tags: Iterable[int]) -> str:
    return ", ".join(str(t) for t in sorted(tags)) or "none"


def check_enforcer_ksks(found: SourceFindings, ksks: Set[tuple[int, int]], report: ZoneReport) -> None:
    """The apex DNSKEY RRset is signed by a KSK (or CSK) that the enforcers use, (key tag,
    algorithm) as their databases have it: the key the parent's DS should point to."""
    if found.dnskeys is None or not ksks:
        return
    for key in found.dnskeys:
        assert isinstance(key, DNSKEY)
        tag = dns.dnssec.key_id(key)
        if tag in found.dnskey_sig_tags and (tag, int(key.algorithm)) in ksks:
            return
    report.add(
        "critical", found.name, "the DNSKEY RRset is not signed by a KSK that the enforcers use "
        f"(KSK key tags {_tags(t for t, _a in ksks)}; signed by {_tags(found.dnskey_sig_tags)})",
    )  # fmt: skip


def check_parent_ds(found: SourceFindings, ds_records: Sequence[DS], report: ZoneReport) -> None:
    """The apex DNSKEY RRset is signed by a key that one of the given DS records (--ds: what
    the parent has) points to, as a validating resolver needs."""
    if not ds_records:
        return
    if found.dnskeys is not None and keys_pointed_to(ds_records, found.dnskeys) & found.dnskey_sig_tags:
        return
    given = _tags(int(d.key_tag) for d in ds_records)
    report.add(
        "critical", found.name, "the DNSKEY RRset is not signed by a key that the DS given with --ds points "
        f"to (DS key tags {given}; signed by {_tags(found.dnskey_sig_tags)})",
    )  # fmt: skip


def check_expiry(found: SourceFindings, now: float, limits: Thresholds, report: ZoneReport) -> None:
    if found.soonest_expiration is None:
        return
    days = (found.soonest_expiration - now) / 86400
    report.min_expiry_days = days if report.min_expiry_days is None else min(days, report.min_expiry_days)
    if days < limits.crit_expiry_days:
        report.add(
            "critical",
            found.name,
            f"a signature expires in {days:.1f} days (critical below {limits.crit_expiry_days})",
        )
    elif days < limits.warn_expiry_days:
        report.add(
            "warning",
            found.name,
            f"a signature expires in {days:.1f} days (warning below {limits.warn_expiry_days})",
        )


def findings(view: ZoneView, name: str, results: Sequence[str | None] | None) -> SourceFindings:
    """The checks of one copy on its own; `results`: verify_all under its own keys (None: no keys)."""
    found = SourceFindings(name, serial=view.serial, dnskeys=view.dnskeys)
    check_signatures(view, results, found)
    check_nsec3(view, found)
    if view.data.rrsigs:
        found.soonest_expiration = min(sig.expiration for sig in view.data.rrsigs)
    if results is not None:
        found.own_failures = sum(1 for why in results if why is not None and why != MISSING)
        found.dnskey_sig_tags = frozenset(
            sig.key_tag
            for sig, why in zip(view.data.rrsigs, results, strict=True)
            if why is None and sig.owner == view.origin and sig.covered == _RT.DNSKEY
        )
    return found


# --------------------------------------------------------------------------- across copies

CrossFailures = Mapping[
    tuple[str, str], int
]  # (signer, key set id) -> its signatures failing under those keys


def cross_needed(copies: Sequence[SourceFindings]) -> dict[str, set[str]]:
    """Per copy, the other copies' key sets that differ from its own: only those need verifying
    again (under an identical key set the results are the copy's own)."""
    needed: dict[str, set[str]] = {}
    for signer in copies:
        for other in copies:
            if other.name != signer.name and other.keyset is not None and other.keyset != signer.keyset:
                needed.setdefault(signer.name, set()).add(other.keyset)
    return needed


def compare_sources(copies: Sequence[SourceFindings], cross: CrossFailures, limits: Thresholds,
                    report: ZoneReport) -> None:  # fmt: skip
    """Across copies: same DNSKEY RRset, every signature valid under every other copy's keys,
    same zone data apart from the serial, NSEC3 parameters, serial spread."""
    _compare_keysets(copies, report)
    _cross_validate(copies, cross, report)
    _compare_data(copies, report)
    if len({c.nsec3 for c in copies if c.nsec3 is not None}) > 1:
        report.add("warning", "duo", "NSEC3 parameters differ between sources: a mixed setup (RFC 8901 5.2); "
                   "resolvers cope, but the salts were meant to be identical under this policy")  # fmt: skip
    _compare_serials(copies, limits, report)


def _compare_keysets(copies: Sequence[SourceFindings], report: ZoneReport) -> None:
    groups: dict[str, list[str]] = {}
    for copy in copies:
        if copy.keyset is not None:
            groups.setdefault(copy.keyset, []).append(copy.name)
    if len(groups) > 1:
        # A warning on its own: during a rollover one copy publishes or withdraws a key moments
        # before another (a secondary follows its NOTIFY). What breaks resolvers is a signature
        # that fails under another copy's keys, which _cross_validate reports as critical.
        report.add(
            "warning",
            "duo",
            "the DNSKEY RRsets differ: " + " vs ".join("+".join(g) for g in groups.values()),
        )


def _cross_validate(copies: Sequence[SourceFindings], cross: CrossFailures, report: ZoneReport) -> None:
    """Every signature of each copy under every other copy's keys."""
    for signer in copies:
        report.cross_failures[signer.name] = 0
        for other in copies:
            if signer.name == other.name or other.keyset is None:
                continue
            if other.keyset == signer.keyset:
                failed = signer.own_failures
            else:
                failed = cross[signer.name, other.keyset]
            report.cross_failures[signer.name] += failed
            report.cross_pairs[signer.name, other.name] = failed
            if failed:
                report.add(
                    "critical",
                    "duo",
                    f"{failed} signatures of {signer.name} do not validate under {other.name}'s keys",
                )


def _record(record: bytes) -> str:
    owner, ttl, rdtype, rdata = record_text(record)
    return f"{owner} {ttl} {rdtype} {rdata}"


def _compare_data(copies: Sequence[SourceFindings], report: ZoneReport) -> None:
    for index, a in enumerate(copies):
        for b in copies[index + 1 :]:
            only_a = sorted((a.data - b.data), key=record_text)
            only_b = sorted((b.data - a.data), key=record_text)
            if not only_a and not only_b:
                continue
            shown = [f"only in {a.name}: {_record(r)}" for r in only_a] + [
                f"only in {b.name}: {_record(r)}" for r in only_b
            ]
            if a.serial == b.serial:
                report.add(
                    "critical",
                    "duo",
                    f"zone data of {a.name} and {b.name} differ with the same serial: {_names(shown)}",
                )
            else:
                why = "different serials: an update may be under way"
                report.add(
                    "warning", "duo", f"zone data of {a.name} and {b.name} differ ({why}): {_names(shown)}"
                )


def _compare_serials(copies: Sequence[SourceFindings], limits: Thresholds, report: ZoneReport) -> None:
    serials = {c.name: c.serial for c in copies}
    spread = max(serials.values()) - min(serials.values())
    if spread > limits.serial_spread:
        lag = min(serials, key=lambda n: serials[n])
        meaning = f"a secondary failing over to {lag} sees an older serial and keeps its copy"
        report.add("warning", "duo", f"SOA serials are {spread} apart ({serials}): {meaning}")
