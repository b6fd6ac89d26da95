"""Split mode: each secondary takes its signer's data; any mix of the two validates (issue 5)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from duo_ods import process
from tests.integration.conftest import Lab
from tests.support.dns_tools import delv, ksk_of, write_trust_anchor
from tests.support.dnssec import axfr, dnskey_rrset, signatures

pytestmark = pytest.mark.integration

ZONE = "example.test"
RESOLVER = "127.0.0.126"
QUERIES = [("www.example.test", "A"), ("nope.example.test", "A"), ("www.example.test", "MX"),
           ("mail.example.test", "A"), ("x.wild.example.test", "TXT"), ("ftp.example.test", "A")]  # fmt: skip


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab("127.0.0.120", "--split")


@pytest.fixture(scope="module")
def anchor(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    zone = lab.signed("a", ZONE)
    return write_trust_anchor(tmp_path_factory.mktemp("ta") / "anchor.conf", ZONE, ksk_of(dnskey_rrset(zone)))


@pytest.fixture(scope="module")
def resolver(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A validating unbound that knows both secondaries for the zone and caches nothing, so every
    answer is put together from whichever secondary it asked: the mix the seed promises."""
    folder = tmp_path_factory.mktemp("unbound")
    ksk = ksk_of(dnskey_rrset(lab.signed("a", ZONE)))
    stubs = "".join(f"    stub-addr: {s['address']}@{s['port']}\n" for s in lab.status["secondaries"])
    server = {
        "interface": RESOLVER, "outgoing-interface": RESOLVER, "port": "53", "do-ip6": "no",
        "chroot": '""', "username": '""', "directory": f'"{folder}"', "pidfile": f'"{folder}/unbound.pid"',
        "logfile": f'"{folder}/unbound.log"', "use-syslog": "no", "verbosity": "1",
        "do-not-query-localhost": "no", "module-config": '"validator iterator"',
        "cache-max-ttl": "0", "cache-max-negative-ttl": "0", "val-log-level": "2",
        "trust-anchor": f'"{ZONE}. DNSKEY {ksk.to_text()}"',
        "local-zone": '"test." nodefault',  # else unbound answers test. itself (RFC 6761)
    }  # fmt: skip
    lines = ["server:", *[f"    {k}: {v}" for k, v in server.items()], "stub-zone:", f'    name: "{ZONE}"']
    conf = folder / "unbound.conf"
    conf.write_text("\n".join(lines) + "\n" + stubs)
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    record_path = folder / "unbound.json"
    record = process.spawn("unbound", ["unbound", "-d", "-c", str(conf)], folder / "stderr", record_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                dns.query.udp(dns.message.make_query(ZONE, "SOA"), RESOLVER, timeout=1)
                break
            except (dns.exception.Timeout, OSError):
                assert process.is_alive(record), (folder / "stderr").read_text()
                assert time.monotonic() < deadline, "unbound did not answer"
        yield RESOLVER
    finally:
        process.stop(record_path)


def test_each_secondary_holds_its_own_signers_signatures(lab: Lab) -> None:
    by_name = {s["name"]: s for s in lab.status["secondaries"]}
    assert by_name["ns1"]["primaries"] == ["a"] and by_name["ns2"]["primaries"] == ["b"]
    signer = {n: signatures(lab.signed(n, ZONE)) for n in ("a", "b")}
    assert signer["a"] != signer["b"]
    for name, node in (("ns1", "a"), ("ns2", "b")):
        copy = axfr(by_name[name]["address"], 53, ZONE, lab.tsig)
        assert signatures(copy) == signer[node], f"{name} must serve {node}'s signatures"


def test_delv_validates_through_each_secondary(lab: Lab, anchor: Path) -> None:
    for sec in lab.status["secondaries"]:
        for name, rdtype in QUERIES:
            ok, out = delv(sec["address"], anchor, ZONE, name, rdtype)
            assert ok, f"{sec['name']}: {out}"


def test_resolver_mixing_both_sets_never_fails(resolver: str) -> None:
    answers = {"NOERROR": 0, "NXDOMAIN": 0}
    for round_ in range(40):
        for name, rdtype in QUERIES:
            reply = dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True), resolver, timeout=5)
            rcode = dns.rcode.to_text(reply.rcode())
            assert rcode != "SERVFAIL", f"round {round_}: {name} {rdtype} SERVFAIL"
            assert reply.flags & dns.flags.AD, f"round {round_}: {name} {rdtype} not validated (no AD)"
            answers[rcode] += 1
    assert answers["NOERROR"] > 0 and answers["NXDOMAIN"] == 40


def test_resolver_really_used_both_secondaries(lab: Lab, resolver: str) -> None:
    """The mix is real: the resolver's queries (from its own address) reached both secondaries."""
    for sec in lab.status["secondaries"]:
        queries = [
            ln for ln in Path(sec["log"]).read_text().splitlines() if f" {RESOLVER}#" in ln and "query:" in ln
        ]
        assert len(queries) > 5, f"{sec['name']} answered {len(queries)} of the resolver's queries"
