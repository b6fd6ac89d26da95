"""The freshness sampler and its helpers (issue 13), shared by tests/integration/test_freshness.py,
tests/integration/test_random_ops.py and bench/random_ops.py.

The sampler thread AXFRs every signer and secondary of a lab every half second and records the SOA
serial and a digest of the content (the zone without RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY and
SOA). It checks two rules at every sample: no serial is ever seen with two different contents, and
no secondary ever goes back to older content (the versions, oldest first, are announced with
`expect` before any server can serve them).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.query
import dns.rdatatype
import dns.zone

from duo_ods.bind.tsig import TsigKey
from tests.integration.conftest import Lab, run_duo

ZONE = "example.test"
CATCH_UP = 30.0  # seconds: after a node returns, every signer and secondary serves the newest data
SIGNER_MADE = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "SOA"}


# --- what a server serves -----------------------------------------------------------------


def fetch(address: str, port: int, key: TsigKey, timeout: float = 3.0) -> dns.zone.Zone | None:
    try:
        messages = dns.query.xfr(
            address, dns.name.from_text(ZONE), port=port, lifetime=timeout, relativize=False,
            keyring=key.keyring(), keyname=key.name,
        )  # fmt: skip
        return dns.zone.from_xfr(messages, relativize=False)
    except (dns.exception.DNSException, OSError, EOFError):
        return None


def content(z: dns.zone.Zone) -> tuple[int, str]:
    """(SOA serial, digest of the content without what each signer makes)."""
    lines = sorted(
        f"{name} {ttl} {dns.rdatatype.to_text(rd.rdtype)} {rd.to_text()}"
        for name, ttl, rd in z.iterate_rdatas()
        if dns.rdatatype.to_text(rd.rdtype) not in SIGNER_MADE
    )
    soa = z.get_rdataset(dns.name.from_text(ZONE), dns.rdatatype.SOA)
    assert soa is not None
    return int(soa[0].serial), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def has_record(z: dns.zone.Zone, owner: str) -> bool:
    return z.get_node(dns.name.from_text(f"{owner}.{ZONE}")) is not None


def servers(lab: Lab) -> dict[str, tuple[str, int]]:
    found = {f"signer {n['name']}": (n["address"], n["port"]) for n in lab.status["nodes"]}
    found |= {f"secondary {s['name']}": (s["address"], s["port"]) for s in lab.status["secondaries"]}
    return found


# --- the sampler --------------------------------------------------------------------------


@dataclass
class Sampler:
    """Every `every` seconds: serial and content digest at every signer and secondary."""

    lab: Lab
    every: float = 0.5
    versions: list[str] = field(default_factory=list)  # content digests, oldest first
    samples: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="freshness-sampler", daemon=True)
        thread.start()
        return thread

    def expect(self, text: str) -> None:
        """The next content version (checked by the signers' own rules: a content digest)."""
        with self.lock:
            self.versions.append(text)

    def run(self) -> None:
        key = self.lab.tsig
        seen_serials: dict[int, tuple[str, str]] = {}
        highest: dict[str, int] = {}
        while not self.stop.wait(self.every):
            for where, (address, port) in servers(self.lab).items():
                z = fetch(address, port, key)
                if z is None:
                    continue
                serial, digest = content(z)
                with self.lock:
                    self.samples.setdefault(where, []).append((time.time(), serial, digest))
                    # Rule 1: one serial, one content, wherever it is served.
                    if serial in seen_serials and seen_serials[serial][0] != digest:
                        self.problems.append(
                            f"serial {serial}: {where} serves other content than {seen_serials[serial][1]}"
                        )
                    seen_serials.setdefault(serial, (digest, where))
                    if not where.startswith("secondary") or digest not in self.versions:
                        continue
                    # Rule 2: a secondary never goes back to older content.
                    version = self.versions.index(digest)
                    if version < highest.get(where, -1):
                        self.problems.append(
                            f"{where} went back from content version {highest[where]} to {version} "
                            f"(serial {serial})"
                        )
                    highest[where] = max(version, highest.get(where, -1))

    def latest(self, where: str) -> tuple[int, str] | None:
        with self.lock:
            entries = self.samples.get(where)
            return (entries[-1][1], entries[-1][2]) if entries else None

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {w: len(s) for w, s in self.samples.items()}


# --- versions of the zone, and waiting for them -------------------------------------------


def version_digest(lab: Lab, text: str) -> str:
    """The content digest of an input text, as the sampler computes it from a served copy."""
    z = dns.zone.from_text(text, origin=dns.name.from_text(ZONE), relativize=False)
    return content(z)[1]


class Versions:
    """Input files for successive versions of the zone, each with one new record."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.base = (lab.dir / "input" / ZONE).read_text()
        self.count = 0

    def next(self, owner: str) -> Path:
        self.count += 1
        # The input's own serial stays: the signers pick theirs (the duo levels them).
        self.base += f"{owner} IN A 192.0.2.{100 + self.count % 150}\n"
        path = self.lab.dir / f"{ZONE}.v{self.count}"  # outside the watched input directory
        path.write_text(self.base)
        return path


def wait_newest(lab: Lab, sampler: Sampler, owner: str, timeout: float = CATCH_UP) -> dict[str, int]:
    """Until every signer and secondary serves the newest version (with `owner`): their serials."""
    want = sampler.versions[-1]
    deadline = time.monotonic() + timeout
    while True:
        latest = {w: sampler.latest(w) for w in servers(lab)}
        if all(v is not None and v[1] == want for v in latest.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"not every server serves the newest data after {timeout} s: {latest}")
        time.sleep(0.3)
    for node in ("a", "b"):  # the record itself, in each signer's signed copy
        assert has_record(lab.signed(node, ZONE), owner)
    for sec in lab.status["secondaries"]:  # ...and in each secondary's copy
        served = fetch(sec["address"], sec["port"], lab.tsig)
        assert served is not None and has_record(served, owner), sec["name"]
    return {w: v[0] for w, v in latest.items() if v is not None}


def update(
    lab: Lab, sampler: Sampler, path: Path, config: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """`zone update` with the file, announced to the sampler first: (exit code, JSON, stderr)."""
    sampler.expect(version_digest(lab, path.read_text()))
    args = ["--config", config or lab.config, "--json", "zone", "update", ZONE, "--file", str(path)]
    proc = run_duo(*args, check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def check_report(lab: Lab) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(lab.duo("--json", "check", check=False).stdout)
    return report


def check_ok(lab: Lab) -> None:
    report = check_report(lab)
    assert report["ok"], json.dumps(report, indent=1)
