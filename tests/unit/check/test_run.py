"""The whole check on signed copies (files), in this process and in worker processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
import pytest

import duo_ods.check.checks
import duo_ods.check.verify
from duo_ods.check.ds import parse_ds
from duo_ods.check.model import ZoneReport
from duo_ods.check.output import as_json
from duo_ods.check.run import check_zone
from duo_ods.check.sources import FileSource
from tests.unit.check.signer import NOW, ORIGIN, Key, nsec3_owner, signed

ZONE = "example.test"


@pytest.fixture(scope="module")
def keys() -> tuple[Key, Key]:
    return Key.make(flags=257), Key.make()


def save(zone: dns.zone.Zone, path: Path) -> FileSource:
    zone.to_file(str(path), relativize=False, want_origin=True)
    return FileSource(path.name, path)


def check(*sources: FileSource, workers: int = 1, now: float = NOW, ds: tuple[str, ...] = ()) -> ZoneReport:
    return check_zone(ZONE, sources, [parse_ds(d) for d in ds], now=now, workers=workers)


def shown(report: ZoneReport) -> list[str]:
    return [f"{p.severity} [{p.source}] {p.message}" for p in report.problems]


def edited(zone: dns.zone.Zone, edit: Callable[[dns.zone.Zone], object]) -> dns.zone.Zone:
    copy = dns.zone.from_text(zone.to_text(relativize=False), ORIGIN, relativize=False)
    edit(copy)
    return copy


@pytest.fixture(scope="module")
def pair(keys: tuple[Key, Key]) -> tuple[dns.zone.Zone, dns.zone.Zone]:
    return signed(ksk=keys[0], zsk=keys[1]), signed(ksk=keys[0], zsk=keys[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_healthy_copies(pair: tuple[dns.zone.Zone, dns.zone.Zone], tmp_path: Path, workers: int) -> None:
    report = check(save(pair[0], tmp_path / "a"), save(pair[1], tmp_path / "b"), workers=workers)
    assert report.problems == [], shown(report)
    sigs = sum(1 for _n, _t, rd in pair[0].iterate_rdatas() if rd.rdtype == dns.rdatatype.RRSIG)
    assert report.signatures == {"a": sigs, "b": sigs}
    assert report.serials == {"a": 2026112801, "b": 2026112801}
    assert report.min_expiry_days == pytest.approx(14.0)


def test_each_signature_verified_once_per_key_set(
    pair: tuple[dns.zone.Zone, dns.zone.Zone], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real = duo_ods.check.verify.verify

    def counting(*args: Any) -> str | None:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(duo_ods.check.checks, "verify", counting)
    a, b = save(pair[0], tmp_path / "a"), save(pair[1], tmp_path / "b")
    report = check(a, b)
    assert report.problems == []
    per_copy = report.signatures["a"]
    assert len(calls) == 2 * per_copy  # own keys only: the other copy's are the same key set
    calls.clear()
    report = check(a, b, save(pair[0], tmp_path / "c"))  # c: a secondary's copy of a
    assert report.problems == [] and report.signatures["c"] == per_copy
    assert len(calls) == 2 * per_copy  # c's signatures were verified as a's already


def test_key_sets_that_differ(keys: tuple[Key, Key], tmp_path: Path) -> None:
    a = signed(ksk=keys[0], zsk=keys[1])
    own_zsk = Key.make()
    b = signed(ksk=keys[0], zsk=own_zsk, extra_keys=(keys[1],))  # b signs with a ZSK only b publishes
    for workers in (1, 2):
        report = check(save(a, tmp_path / "a"), save(b, tmp_path / "b"), workers=workers)
        problems = shown(report)
        assert "warning [duo] the DNSKEY RRsets differ: a vs b" in problems
        b_sigs = report.signatures["b"] - 1  # all but b's DNSKEY RRset signature (by the shared KSK)
        assert f"critical [duo] {b_sigs} signatures of b do not validate under a's keys" in problems
        assert not any("of a do not validate" in p for p in problems)  # a's keys are all in b's set
        assert not any(p.startswith("critical [a]") or p.startswith("critical [b]") for p in problems)
        assert report.cross_pairs == {("a", "b"): 0, ("b", "a"): b_sigs}


def test_three_copies_every_ordered_pair_cross_validated(
    pair: tuple[dns.zone.Zone, dns.zone.Zone], tmp_path: Path
) -> None:
    """Three signers: each copy's signatures under each other copy's keys, six pairs, all reported."""
    copies = [save(pair[i % 2], tmp_path / name) for i, name in enumerate("abc")]
    report = check(*copies)
    assert report.problems == [], shown(report)
    assert report.cross_pairs == {(s, k): 0 for s in "abc" for k in "abc" if s != k}
    pairs = as_json([report])["zones"][ZONE]["cross_validated"]
    assert len(pairs) == 6
    assert {(p["signatures_of"], p["keys_of"]) for p in pairs} == set(report.cross_pairs)
    assert all(p["failed"] == 0 and p["signatures"] == report.signatures["a"] for p in pairs)


def test_tampered_copies(pair: tuple[dns.zone.Zone, dns.zone.Zone], tmp_path: Path) -> None:
    b = save(pair[1], tmp_path / "b")

    def run(edit: Callable[[dns.zone.Zone], object]) -> list[str]:
        return shown(check(save(edited(pair[0], edit), tmp_path / "a"), b))

    def drop(name: str, rdtype: str, covers: str | None = None) -> Callable[[dns.zone.Zone], object]:
        def edit(z: dns.zone.Zone) -> None:
            node = z.find_node(dns.name.from_text(name))
            if covers:
                node.delete_rdataset(1, dns.rdatatype.RRSIG, dns.rdatatype.from_text(covers))  # type: ignore[arg-type]
            else:
                node.delete_rdataset(1, dns.rdatatype.from_text(rdtype))  # type: ignore[arg-type]

        return edit

    problems = run(drop("www.example.test", "RRSIG", covers="A"))
    assert "critical [a] 1 RRsets without a valid signature: www.example.test. A" in problems
    owner = str(nsec3_owner("www.example.test"))
    problems = run(drop(owner, "NSEC3"))
    broken = [p for p in problems if p.startswith("critical [a] NSEC3 chain broken: ")]
    assert broken and "www.example.test. has no NSEC3" in broken[0]
    assert "next hashed owner does not point to the following NSEC3" in broken[0]
    assert f"critical [a] 1 RRsets without a valid signature: {owner}" not in problems
    problems = run(drop("example.test", "NSEC3PARAM"))
    assert "critical [a] NSEC3 chain without an NSEC3PARAM at the apex" in problems

    def glue_changed(z: dns.zone.Zone) -> None:
        z.replace_rdataset("ns.child.example.test.", dns.rdataset.from_text("IN", "A", 300, "192.0.2.98"))

    problems = run(glue_changed)
    assert any(
        p.startswith("critical [duo] zone data of a and b differ with the same serial: only in a: ns.child")
        for p in problems
    ), problems


def test_nsec3_types_must_match(keys: tuple[Key, Key], tmp_path: Path) -> None:
    zone = signed(ksk=keys[0], zsk=keys[1])
    owner = nsec3_owner("www.example.test")

    def wrong_types(z: dns.zone.Zone) -> None:
        rds = z.find_rdataset(owner, dns.rdatatype.NSEC3)
        old = rds[0].to_text()
        z.replace_rdataset(owner, dns.rdataset.from_text("IN", "NSEC3", 300, old.replace(" AAAA", " TXT")))

    report = check(save(edited(zone, wrong_types), tmp_path / "a"))
    assert any(
        "www.example.test. NSEC3 types differ (missing ['AAAA'], extra ['TXT'])" in p for p in shown(report)
    )


def test_opt_out_and_ds(keys: tuple[Key, Key], tmp_path: Path) -> None:
    zone = signed(ksk=keys[0], zsk=keys[1], opt_out=True)
    ksk = keys[0].dnskey
    ds = f"{ZONE}. IN DS {dns.dnssec.make_ds(ORIGIN, ksk, 'SHA256')}"
    assert check(save(zone, tmp_path / "a"), ds=(ds,)).problems == []
    zsk_ds = f"{ZONE}. IN DS {dns.dnssec.make_ds(ORIGIN, keys[1].dnskey, 'SHA256')}"
    assert shown(check(save(zone, tmp_path / "a"), ds=(zsk_ds,))) == [
        f"critical [a] the DNSKEY RRset is not signed by a key that the DS given with --ds points to "
        f"(DS key tags {keys[1].tag}; signed by {keys[0].tag})"
    ]


def test_expiry_and_missing_copies(pair: tuple[dns.zone.Zone, dns.zone.Zone], tmp_path: Path) -> None:
    a = save(pair[0], tmp_path / "a")
    assert shown(check(a, now=NOW + 12 * 86400)) == [
        "warning [a] a signature expires in 2.0 days (warning below 3.0)"
    ]
    report = check(a, FileSource("gone", tmp_path / "gone"), workers=2)
    assert [(p.severity, p.source) for p in report.problems] == [("critical", "gone")]
    assert report.problems[0].message.startswith(f"cannot read {tmp_path / 'gone'} as zone example.test:")
