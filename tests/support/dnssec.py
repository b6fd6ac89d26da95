"""Test-side DNSSEC helpers: AXFR from a real signer and per-signature cross-validation (dnspython)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from duo_ods.dns.tsig import TsigKey


def axfr(address: str, port: int, zone: str, key: TsigKey | None = None) -> dns.zone.Zone:
    origin = dns.name.from_text(zone)
    keyring, keyname = (key.keyring(), key.name) if key else (None, None)
    messages = dns.query.xfr(
        address, origin, port=port, lifetime=30, relativize=False, keyring=keyring, keyname=keyname
    )
    return dns.zone.from_xfr(messages, relativize=False)


def wait_signed(
    address: str, port: int, zone: str, dnskeys: int, key: TsigKey | None = None, timeout: float = 60
) -> dns.zone.Zone:
    """AXFR until the zone is served with `dnskeys` DNSKEYs and a signed DNSKEY RRset."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            z = axfr(address, port, zone, key)
            keys = z.get_rdataset(z.origin, dns.rdatatype.DNSKEY)
            sigs = z.get_rdataset(z.origin, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
            if keys is not None and len(keys) == dnskeys and sigs is not None:
                return z
        except (dns.exception.DNSException, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{zone} not signed with {dnskeys} DNSKEYs at {address}:{port} in {timeout} s"
            )
        time.sleep(0.5)


def dnskey_rrset(z: dns.zone.Zone) -> dns.rrset.RRset:
    rrset = z.find_rrset(z.origin, dns.rdatatype.DNSKEY)
    assert isinstance(rrset, dns.rrset.RRset)
    return rrset


def signatures(z: dns.zone.Zone) -> set[str]:
    return {
        f"{name} {rd.to_text()}" for name, _ttl, rd in z.iterate_rdatas() if rd.rdtype == dns.rdatatype.RRSIG
    }


@dataclass
class CrossResult:
    validated: int
    failures: list[str]


def cross_validate(signed: dns.zone.Zone, dnskeys: dns.rrset.RRset) -> CrossResult:
    """Validate every single RRSIG of `signed` over its own RRset, under the given DNSKEY RRset
    (another signer's: that is the claim of the duo)."""
    keyring = {signed.origin: dnskeys}
    result = CrossResult(0, [])
    for name, node in signed.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype != dns.rdatatype.RRSIG:
                continue
            covered = node.get_rdataset(dns.rdataclass.IN, rdataset.covers)
            assert covered is not None, f"RRSIG without data at {name}"
            rrset = dns.rrset.from_rdata_list(name, covered.ttl, list(covered))
            for sig in rdataset:
                try:
                    dns.dnssec.validate_rrsig(rrset, sig, keyring)
                    result.validated += 1
                except dns.dnssec.ValidationFailure as exc:
                    result.failures.append(f"{name} {dns.rdatatype.to_text(rdataset.covers)}: {exc}")
    return result


def write_zone(z: dns.zone.Zone, path: Path) -> Path:
    z.to_file(str(path), relativize=False, want_origin=True)
    return path


def verify_with_tools(path: Path, zone: str) -> None:
    """ldns-verify-zone and dnssec-verify must both accept the zone file."""
    for argv in (["ldns-verify-zone", str(path)], ["dnssec-verify", "-o", zone, str(path)]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"{argv[0]} failed on {path}: {proc.stdout}{proc.stderr}"
