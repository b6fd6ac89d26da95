"""The checks themselves: one copy of a zone on its own, and copies against each other (pure)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.NSEC3 import NSEC3

from duo_ods.check.model import Thresholds, ZoneReport
from duo_ods.check.verify import Verifier, keyset_id
from duo_ods.check.zoneview import ZoneView, bitmap_types, unsigned_data

MAX_LISTED = 5  # name at most this many examples per finding; the count says the rest

_B32_TO_HEX = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHIJKLMNOPQRSTUV")


def _names(items: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in list(items)[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _record(record: tuple[str, int, str, str]) -> str:
    owner, ttl, rdtype, rdata = record
    return f"{owner} {ttl} {rdtype} {rdata}"


def check_signatures(view: ZoneView, source: str, ctx: Context, report: ZoneReport) -> None:
    """Every authoritative RRset carries a signature valid under the source's own DNSKEY RRset;
    delegations and glue carry none."""
    if view.dnskeys is None:
        report.add("critical", source, "no DNSKEY RRset at the apex")
        return
    valid: set[tuple[dns.name.Name, int]] = set()
    bad: list[str] = []
    wrongly_signed: list[str] = []
    for rrset, sig, owner in view.rrsigs:
        covered = (owner, sig.type_covered)
        if owner in view.occluded or (owner in view.delegations and sig.type_covered == dns.rdatatype.NS):
            wrongly_signed.append(f"{owner} {dns.rdatatype.to_text(sig.type_covered)}")
            continue
        if rrset is None:
            bad.append(f"{owner} RRSIG over a missing {dns.rdatatype.to_text(sig.type_covered)} RRset")
            continue
        why = ctx.verifier.check(rrset, sig, view.dnskeys, ctx.now)
        if why is None:
            valid.add(covered)
        else:
            bad.append(f"{owner} {dns.rdatatype.to_text(sig.type_covered)} (key tag {sig.key_tag}): {why}")
    unsigned = [
        f"{r.name} {dns.rdatatype.to_text(r.rdtype)}"
        for r in view.signed_rrsets
        if (r.name, r.rdtype) not in valid
    ]
    if unsigned:
        report.add(
            "critical", source, f"{len(unsigned)} RRsets without a valid signature: {_names(unsigned)}"
        )
    if bad:
        report.add("critical", source, f"{len(bad)} signatures do not validate: {_names(bad)}")
    if wrongly_signed:
        report.add("critical", source, f"delegation or glue data is signed: {_names(wrongly_signed)}")
    report.signatures[source] = len(view.rrsigs)


def _hashed_owner(name: dns.name.Name, origin: dns.name.Name, nsec3: NSEC3) -> dns.name.Name:
    label = dns.dnssec.nsec3_hash(name, nsec3.salt, nsec3.iterations, nsec3.algorithm)
    return dns.name.Name([label.lower().encode(), *origin.labels])


def _expected_nsec3_names(view: ZoneView) -> dict[dns.name.Name, set[int]]:
    """Every name the chain must cover (authoritative names, delegations and empty non-terminals)
    with the types its bitmap must list."""
    expected: dict[dns.name.Name, set[int]] = {}
    for name, node in view.zone.nodes.items():
        absolute = name.derelativize(view.origin)
        if absolute in view.occluded or absolute in view.nsec3:
            continue
        types = {rds.rdtype for rds in node.rdatasets if rds.rdtype != dns.rdatatype.NSEC3}
        if absolute in view.delegations:
            types &= {dns.rdatatype.NS, dns.rdatatype.DS}
            if dns.rdatatype.DS in types:
                types.add(dns.rdatatype.RRSIG)
        elif types - {dns.rdatatype.RRSIG}:
            types.add(dns.rdatatype.RRSIG)
        expected[absolute] = types
        parent = absolute
        while parent != view.origin:  # empty non-terminals between the name and the apex
            parent = parent.parent()
            expected.setdefault(parent, set())
    return expected


Nsec3Params = tuple[int, bytes, int]  # iterations, salt, flags


def _nsec3_coverage(
    view: ZoneView, records: dict[dns.name.Name, object], first: NSEC3, opt_out: bool
) -> tuple[list[str], set[dns.name.Name]]:
    """Which names lack their NSEC3 or list the wrong types; and which NSEC3 owners are accounted for."""
    problems: list[str] = []
    covered: set[dns.name.Name] = set()
    for name, types in _expected_nsec3_names(view).items():
        owner = _hashed_owner(name, view.origin, first)
        record = records.get(owner)
        insecure_delegation = name in view.delegations and dns.rdatatype.DS not in types
        if record is None:
            if not (opt_out and insecure_delegation):
                problems.append(f"{name} has no NSEC3")
            continue
        covered.add(owner)
        assert isinstance(record, NSEC3)
        listed = bitmap_types(record.windows)
        if listed != types:
            missing = sorted(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t)) for t in types - listed)
            extra = sorted(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t)) for t in listed - types)
            problems.append(f"{name} NSEC3 types differ (missing {missing}, extra {extra})")
    return problems, covered


def check_nsec3(view: ZoneView, source: str, report: ZoneReport) -> Nsec3Params | None:
    """The NSEC3 chain: one parameter set, every name covered with the right types, a closed ring.
    Returns the parameters (iterations, salt, flags) for the cross-source comparison."""
    param_set = view.zone.get_rdataset(view.origin, dns.rdatatype.NSEC3PARAM)
    if not view.nsec3:
        if param_set is not None:
            report.add("critical", source, "NSEC3PARAM published but no NSEC3 chain")
        return None
    records = {owner: rrset[0] for owner, rrset in view.nsec3.items()}
    params = {(r.algorithm, r.iterations, r.salt) for r in records.values() if isinstance(r, NSEC3)}
    if len(params) != 1:
        report.add("critical", source, f"NSEC3 records use {len(params)} different parameter sets")
        return None
    first = next(iter(records.values()))
    assert isinstance(first, NSEC3)
    opt_out = bool(first.flags & 1)
    if param_set is None:
        report.add("critical", source, "NSEC3 chain without an NSEC3PARAM at the apex")
    elif param_set.ttl != 0:
        report.add(
            "warning", source, f"NSEC3PARAM TTL is {param_set.ttl}, not 0: resolvers may cache one signer's"
        )
    problems, covered = _nsec3_coverage(view, records, first, opt_out)
    strays = [str(o) for o in records if o not in covered]
    if strays:
        problems.append(f"{len(strays)} NSEC3 records match no name in the zone: {_names(strays)}")
    ring = sorted(records, key=lambda o: o.labels[0])
    for i, owner in enumerate(ring):
        record = records[owner]
        assert isinstance(record, NSEC3)
        following = ring[(i + 1) % len(ring)].labels[0].upper()
        if base64.b32encode(record.next).translate(_B32_TO_HEX) != following:
            problems.append(f"{owner} next hashed owner does not point to the following NSEC3")
    if problems:
        report.add("critical", source, f"NSEC3 chain broken: {_names(problems)}")
    return first.iterations, first.salt, first.flags


def check_ds(
    view: ZoneView, source: str, ds_records: Sequence[str], ctx: Context, report: ZoneReport
) -> None:
    """The apex DNSKEY RRset is signed by a key that a published DS points to."""
    if view.dnskeys is None or not ds_records:
        return
    ds_texts = {d.split(" IN DS ", 1)[-1].lower() for d in ds_records}
    for rrset, sig, owner in view.rrsigs:
        if owner != view.origin or sig.type_covered != dns.rdatatype.DNSKEY or rrset is None:
            continue
        for key in view.dnskeys:
            assert isinstance(key, DNSKEY)
            if dns.dnssec.key_id(key) != sig.key_tag or not key.flags & 1:
                continue
            if dns.dnssec.make_ds(view.origin, key, "SHA256").to_text().lower() in ds_texts and (
                ctx.verifier.check(rrset, sig, view.dnskeys, ctx.now) is None
            ):
                return
    report.add("critical", source, "the DNSKEY RRset is not signed by a key that the published DS points to")


def check_expiry(view: ZoneView, source: str, ctx: Context, report: ZoneReport) -> None:
    if not view.rrsigs:
        return
    limits = ctx.limits
    soonest = min(sig.expiration for _rrset, sig, _owner in view.rrsigs)
    days = (soonest - ctx.now) / 86400
    report.min_expiry_days = days if report.min_expiry_days is None else min(days, report.min_expiry_days)
    if days < limits.crit_expiry_days:
        report.add(
            "critical",
            source,
            f"a signature expires in {days:.1f} days (critical below {limits.crit_expiry_days})",
        )
    elif days < limits.warn_expiry_days:
        report.add(
            "warning",
            source,
            f"a signature expires in {days:.1f} days (warning below {limits.warn_expiry_days})",
        )


@dataclass(frozen=True)
class Context:
    """What every check of one run shares."""

    verifier: Verifier
    now: float
    limits: Thresholds


def compare_sources(views: dict[str, ZoneView], params: dict[str, Nsec3Params | None], ctx: Context,
                    report: ZoneReport) -> None:  # fmt: skip
    """Across copies: same DNSKEY RRset, every signature valid under every other copy's keys,
    same zone data apart from the serial, NSEC3 parameters, serial spread."""
    _compare_keysets(views, report)
    _cross_validate(views, ctx, report)
    _compare_data(views, report)
    if len({p for p in params.values() if p is not None}) > 1:
        report.add("warning", "duo", "NSEC3 parameters differ between sources: a mixed setup (RFC 8901 5.2); "
                   "resolvers cope, but the salts were meant to be identical under this policy")  # fmt: skip
    _compare_serials(views, ctx.limits, report)


def _compare_keysets(views: dict[str, ZoneView], report: ZoneReport) -> None:
    groups: dict[str, list[str]] = {}
    for name, view in views.items():
        if view.dnskeys is not None:
            groups.setdefault(keyset_id(view.dnskeys), []).append(name)
    if len(groups) > 1:
        report.add(
            "critical",
            "duo",
            "the DNSKEY RRsets differ: " + " vs ".join("+".join(g) for g in groups.values()),
        )


def _cross_validate(views: dict[str, ZoneView], ctx: Context, report: ZoneReport) -> None:
    """Every signature of each copy under every other copy's keys. The verifier's cache makes
    this free where the key sets are identical: those results are known from the own-key check."""
    for signer, view in views.items():
        for other, other_view in views.items():
            keys = other_view.dnskeys
            if signer == other or keys is None:
                continue
            failed = sum(
                1 for rrset, sig, _owner in view.rrsigs
                if rrset is not None and ctx.verifier.check(rrset, sig, keys, ctx.now) is not None
            )  # fmt: skip
            if failed:
                report.add(
                    "critical", "duo", f"{failed} signatures of {signer} do not validate under {other}'s keys"
                )


def _compare_data(views: dict[str, ZoneView], report: ZoneReport) -> None:
    names = list(views)
    data = {n: unsigned_data(v) for n, v in views.items()}
    for index, a in enumerate(names):
        for b in names[index + 1 :]:
            only_a, only_b = sorted(data[a] - data[b]), sorted(data[b] - data[a])
            if not only_a and not only_b:
                continue
            shown = [f"only in {a}: {_record(r)}" for r in only_a] + [
                f"only in {b}: {_record(r)}" for r in only_b
            ]
            if views[a].serial == views[b].serial:
                report.add(
                    "critical",
                    "duo",
                    f"zone data of {a} and {b} differ with the same serial: {_names(shown)}",
                )
            else:
                why = "different serials: an update may be under way"
                report.add("warning", "duo", f"zone data of {a} and {b} differ ({why}): {_names(shown)}")


def _compare_serials(views: dict[str, ZoneView], limits: Thresholds, report: ZoneReport) -> None:
    serials = {n: v.serial for n, v in views.items()}
    spread = max(serials.values()) - min(serials.values())
    if spread > limits.serial_spread:
        lag = min(serials, key=lambda n: serials[n])
        meaning = f"a secondary failing over to {lag} sees an older serial and keeps its copy"
        report.add("warning", "duo", f"SOA serials are {spread} apart ({serials}): {meaning}")
