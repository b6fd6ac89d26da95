"""Three signers (issue 18): one lab of nodes a, b and c, split mode (ns1 from a, ns2 from b, ns3 from
c), real ODS, BIND, delv and unbound.

Shared keys published identically by all three; every signature cross-validated across every pair;
a validating unbound over the three sets of name servers; one signer killed and another hung while an
update goes out (the third carries it, also through a failover secondary over all three relays, then
everything converges); a wiped node restored (keys from the backup's bundles, state from a peer);
last, a fourth node joining the running trio the same way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from duo_ods import process
from duo_ods.bind.relay import relay_files
from duo_ods.config.load import load_config
from duo_ods.dns.notify import send_notify
from duo_ods.dns.query import soa_serial
from duo_ods.lab.secondaries import add_address
from tests.integration.conftest import Lab, without_supervisor
from tests.support.disk import remove_tree
from tests.support.dns_tools import delv, ksk_of, write_trust_anchor
from tests.support.dnssec import axfr, cross_validate, dnskey_rrset, signatures

pytestmark = pytest.mark.integration

BASE = "127.0.14.10"  # nodes .11-.13, secondaries .14-.16 (the lab's address plan)
FAILOVER_SECONDARY = "127.0.14.18"  # a named rendered by `bind-config --mode failover`
RESOLVER = "127.0.14.19"
ZONE = "example.test"
NODES = ("a", "b", "c")
SECONDARIES = {"ns1": "a", "ns2": "b", "ns3": "c"}
QUERIES = [("www.example.test", "A"), ("nope.example.test", "A"), ("www.example.test", "MX"),
           ("mail.example.test", "A"), ("x.wild.example.test", "TXT")]  # fmt: skip
NEW_WWW = "192.0.2.181"

T = TypeVar("T")


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    # One signer is killed on purpose (not `node stop`): no supervisor may start it again meanwhile.
    return make_lab(BASE, "--nodes", "3", "--split", edit=without_supervisor)


@pytest.fixture(scope="module")
def anchor(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ksk = ksk_of(dnskey_rrset(lab.signed("a", ZONE)))
    return write_trust_anchor(tmp_path_factory.mktemp("ta") / "anchor.conf", ZONE, ksk)


def _wait(what: str, timeout: float, probe: Callable[[], T | None], interval: float = 0.3) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)


def _secondary(lab: Lab, name: str) -> dict[str, Any]:
    return next(s for s in lab.status["secondaries"] if s["name"] == name)  # type: ignore[no-any-return]


def _signer_pid(lab: Lab, node: str) -> int:
    record = json.loads((Path(lab.node(node)["base_dir"]) / "state" / "signerd.json").read_text())
    return int(record["pid"])


def _serial(lab: Lab, node: str) -> int | None:
    n = lab.node(node)
    return soa_serial(n["address"], n["port"], ZONE, lab.tsig, timeout=0.5)


def _www(address: str, port: int = 53) -> str | None:
    """The A record of www as `address` serves it (None: no answer)."""
    try:
        reply = dns.query.udp(dns.message.make_query(f"www.{ZONE}", "A"), address, port=port, timeout=1)
    except (dns.exception.DNSException, OSError):
        return None
    return next(
        (rd.to_text() for rrset in reply.answer for rd in rrset if rd.rdtype == dns.rdatatype.A), None
    )


def _signer_www(lab: Lab, node: str) -> str | None:
    """The A record of www in the node's signed zone (AXFR with the transfer key: a signer answers
    nobody else but its relay); None when it does not answer."""
    n = lab.node(node)
    try:
        zone = axfr(n["address"], n["port"], ZONE, lab.tsig)
    except (dns.exception.DNSException, OSError):
        return None
    rdataset = zone.get_rdataset(f"www.{ZONE}.", "A")
    return rdataset[0].to_text() if rdataset else None


def _validated(server: str, anchor: Path, expect: str) -> bool:
    ok, out = delv(server, anchor, ZONE, f"www.{ZONE}", "A")
    return ok and expect in out


# --- shared keys, every pair -------------------------------------------------------------------


def test_lab_has_three_nodes_and_a_secondary_for_each(lab: Lab) -> None:
    assert [n["name"] for n in lab.status["nodes"]] == list(NODES)
    assert [n["address"] for n in lab.status["nodes"]] == ["127.0.14.11", "127.0.14.12", "127.0.14.13"]
    for name, node in SECONDARIES.items():
        sec = _secondary(lab, name)
        assert sec["primaries"] == [node] and sec["mode"] == "split", sec
        assert sec["pid"] is not None


def test_all_three_publish_the_same_keys_and_sign_on_their_own(lab: Lab) -> None:
    copies = {n: lab.signed(n, ZONE) for n in NODES}
    keysets = {n: dnskey_rrset(z) for n, z in copies.items()}
    assert keysets["a"] == keysets["b"] == keysets["c"]
    assert len(keysets["a"]) == 2
    sigs = {n: signatures(z) for n, z in copies.items()}
    assert sigs["a"] != sigs["b"] and sigs["b"] != sigs["c"] and sigs["a"] != sigs["c"]
    for signer in NODES:  # the test's own cross-validation (dnspython), independent of `check`
        for other in NODES:
            if other != signer:
                result = cross_validate(copies[signer], keysets[other])
                assert result.validated > 0 and result.failures == [], (signer, other, result.failures)


def test_check_cross_validates_every_pair(lab: Lab) -> None:
    report = json.loads(lab.duo("--json", "check").stdout)
    assert report["ok"], report
    zone = report["zones"][ZONE]
    copies = [*NODES, *SECONDARIES]
    assert set(zone["signatures"]) == set(copies)
    pairs = {(p["signatures_of"], p["keys_of"]): p for p in zone["cross_validated"]}
    for signer in copies:
        for keys in copies:
            if keys == signer:
                continue
            pair = pairs.get((signer, keys))
            assert pair is not None, f"{signer} under {keys}'s keys was not cross-validated"
            assert pair["failed"] == 0 and pair["signatures"] == zone["signatures"][signer] > 0, pair
    assert len(pairs) == len(copies) * (len(copies) - 1)


def test_failover_bind_config_over_three_relays_in_order(lab: Lab) -> None:
    """The other mode, rendered only (the lab runs split): one secondary pulling from relay a, then b,
    then c; bind-config checks it with named-checkconf before it prints it."""
    out = json.loads(lab.duo("--json", "bind-config", "--mode", "failover", "--zones").stdout)
    assert out["mode"] == "failover"
    for name in SECONDARIES:
        text = out["secondaries"][name]
        relays = re.findall(
            r"(127\.0\.14\.\d+) port 1053 key \"duo-transfer\";\s+// relay of node (\w)", text
        )
        assert relays == [("127.0.14.11", "a"), ("127.0.14.12", "b"), ("127.0.14.13", "c")], text


# --- a validating resolver over the three sets --------------------------------------------------


@pytest.fixture(scope="module")
def resolver(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A validating unbound that knows the three secondaries for the zone and caches nothing, so every
    answer is put together from whichever secondary it asked. Yields its address and its config (for
    unbound-control, over a local socket)."""
    folder = tmp_path_factory.mktemp("unbound")
    ksk = ksk_of(dnskey_rrset(lab.signed("a", ZONE)))
    stubs = "".join(f"    stub-addr: {s['address']}@{s['port']}\n" for s in lab.status["secondaries"])
    server = {
        "interface": RESOLVER, "outgoing-interface": RESOLVER, "port": "53", "do-ip6": "no",
        "chroot": '""', "username": '""', "directory": f'"{folder}"', "pidfile": f'"{folder}/unbound.pid"',
        "logfile": f'"{folder}/unbound.log"', "use-syslog": "no", "verbosity": "1",
        "do-not-query-localhost": "no", "module-config": '"validator iterator"',
        "cache-max-ttl": "0", "cache-max-negative-ttl": "0", "val-log-level": "2",
        "extended-statistics": "yes", "statistics-cumulative": "yes",
        "trust-anchor": f'"{ZONE}. DNSKEY {ksk.to_text()}"',
        "local-zone": '"test." nodefault',  # else unbound answers test. itself (RFC 6761)
    }  # fmt: skip
    control = ["remote-control:", "    control-enable: yes", "    control-use-cert: no",
               f'    control-interface: "{folder}/control.sock"']  # fmt: skip
    lines = ["server:", *[f"    {k}: {v}" for k, v in server.items()], *control,
             "stub-zone:", f'    name: "{ZONE}"']  # fmt: skip
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
        yield RESOLVER, conf
    finally:
        process.stop(record_path)


def _unbound_stats(conf: Path) -> dict[str, float]:
    out = subprocess.run(
        ["unbound-control", "-c", str(conf), "stats_noreset"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {k: float(v) for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)}


def test_unbound_over_the_three_split_sets_validates_100_answers_none_bogus(
    lab: Lab, resolver: tuple[str, Path]
) -> None:
    address, conf = resolver
    before = _unbound_stats(conf)
    answers = {"NOERROR": 0, "NXDOMAIN": 0}
    for i in range(100):
        name, rdtype = QUERIES[i % len(QUERIES)]
        reply = dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True), address, timeout=5)
        rcode = dns.rcode.to_text(reply.rcode())
        assert rcode != "SERVFAIL", f"query {i}: {name} {rdtype} SERVFAIL"
        assert reply.flags & dns.flags.AD, f"query {i}: {name} {rdtype} not validated (no AD)"
        answers[rcode] += 1
    assert answers["NOERROR"] == 80 and answers["NXDOMAIN"] == 20
    stats = _unbound_stats(conf)
    assert stats["num.answer.bogus"] == 0, stats
    assert stats["num.answer.secure"] - before.get("num.answer.secure", 0) >= 100, stats
    # The mix is real: the resolver's queries (from its own address) reached all three sets.
    for name in SECONDARIES:
        log = Path(_secondary(lab, name)["log"]).read_text()
        queries = [ln for ln in log.splitlines() if f" {RESOLVER}#" in ln and "query:" in ln]
        assert len(queries) >= 3, f"{name} answered {len(queries)} of the resolver's queries"


# --- one signer killed, another hung ------------------------------------------------------------


@pytest.fixture(scope="module")
def failover(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A named run from `bind-config --mode failover --zones` for this lab: the zone from relay a,
    else b, else c. Its address goes on lo through the lab's ledger (lab down takes it off)."""
    folder = tmp_path_factory.mktemp("failover")
    (folder / "zones").mkdir()
    rendered = json.loads(lab.duo("--json", "bind-config", "--mode", "failover", "--zones").stdout)
    (folder / "zones.conf").write_text(rendered["secondaries"]["ns1"])
    conf = folder / "named.conf"
    conf.write_text(
        "options {\n"
        f'\tdirectory "{folder}";\n\tpid-file "{folder}/named.pid";\n'
        f'\tsession-keyfile "{folder}/session.key";\n'
        f"\tlisten-on port 53 {{ {FAILOVER_SECONDARY}; }};\n\tlisten-on-v6 {{ none; }};\n"
        f"\ttransfer-source {FAILOVER_SECONDARY};\n\tquery-source address {FAILOVER_SECONDARY};\n"
        "\trecursion no;\n\tdnssec-validation no;\n\tnotify no;\n};\n"
        "controls { };\n"
        f'logging {{ channel log {{ file "{folder}/named.log"; print-time yes; severity info; }};\n'
        "\tcategory default { log; }; category xfer-in { log; }; category notify { log; }; };\n"
        f'include "{rendered["key_file"]}";\ninclude "{folder}/zones.conf";\n'
    )
    subprocess.run(["named-checkconf", str(conf)], check=True, capture_output=True)
    add_address(FAILOVER_SECONDARY, lab.dir / "state" / "addresses.json")
    record_path = folder / "named.json"
    process.spawn(
        "named failover", ["named", "-f", "-c", str(conf)], folder / "stderr", record_path, cwd=folder
    )
    try:
        _wait("the failover secondary serves the zone", 30, lambda: _www(FAILOVER_SECONDARY))
        yield FAILOVER_SECONDARY
    finally:
        process.stop(record_path)


def _update(lab: Lab, tmp_path: Path, www: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{ZONE}.{www}"
    source = (lab.dir / "input" / ZONE).read_text()
    path.write_text(re.sub(r"(?m)^(www\s+IN A\s+)\S+$", rf"\g<1>{www}", source))
    return lab.duo("--json", "zone", "update", ZONE, "--file", str(path), check=False)


def test_one_signer_killed_another_hung_the_third_carries_the_update(
    lab: Lab, anchor: Path, failover: str, tmp_path: Path
) -> None:
    old = _signer_www(lab, "a")
    assert old is not None and old != NEW_WWW
    before = {n: _serial(lab, n) for n in NODES}
    assert None not in before.values()
    hung = _signer_pid(lab, "b")
    os.kill(_signer_pid(lab, "a"), signal.SIGKILL)
    os.kill(hung, signal.SIGSTOP)
    try:
        started = time.monotonic()
        proc = _update(lab, tmp_path, NEW_WWW)
        took = time.monotonic() - started
        assert proc.returncode == 1, proc.stderr  # two nodes did not take it now
        result = json.loads(proc.stdout)
        assert sorted(result["missed"]) == ["a", "b"], result
        assert result["nodes"]["c"]["status"] == "signed", result
        # The third signer leads: above every serial served before the faults.
        lead = _wait(
            "c signs the update",
            30,
            lambda: (s := _serial(lab, "c")) is not None and s > max(before.values()) and s,
        )
        assert _serial(lab, "a") is None  # killed: nothing answers
        # Its set of name servers serves the new data, validated; the other two sets still serve
        # the old data, validated (their signers cannot give them anything newer).
        ns3 = _secondary(lab, "ns3")["address"]
        _wait("ns3 serves the update validated", 30, lambda: _validated(ns3, anchor, NEW_WWW))
        for name in ("ns1", "ns2"):
            assert _validated(_secondary(lab, name)["address"], anchor, old), name
        assert (soa_serial(ns3, 53, ZONE) or 0) == lead
        # A failover secondary over all three relays passes over a's and b's (stale) relays to c's,
        # once told (zone update NOTIFYs the secondaries of the config, which this one is not).
        assert send_notify(failover, 53, ZONE, lab.tsig) is None
        _wait("the failover secondary takes c's data", 30, lambda: _validated(failover, anchor, NEW_WWW))
        assert soa_serial(failover, 53, ZONE) == lead
        print(f"trio: update with a killed and b hung took {took:.1f} s; c's serial {lead}, before {before}")
    finally:
        os.kill(hung, signal.SIGCONT)
    # Back: b resumes, a starts again; both catch up, the newest data wins everywhere.
    lab.duo("node", "start", "a")
    lab.duo("zone", "catch-up")
    for node in NODES:
        _wait(f"{node} serves the new data", 60, lambda node=node: _signer_www(lab, node) == NEW_WWW)
    for name in SECONDARIES:
        address = _secondary(lab, name)["address"]
        _wait(f"{name} serves the new data validated", 60, lambda a=address: _validated(a, anchor, NEW_WWW))
    report = json.loads(lab.duo("--json", "check").stdout)
    assert report["ok"], report
    assert all(p["failed"] == 0 for p in report["zones"][ZONE]["cross_validated"])


# --- a wiped node restored ----------------------------------------------------------------------


def test_wiped_node_restored_from_backup_bundles_and_a_peer_publishes_the_same_keys(lab: Lab) -> None:
    keys_before = dnskey_rrset(lab.signed("a", ZONE))
    duo = load_config(Path(lab.config))
    # The machine is lost: its daemons and its relay (by pid, before its record goes with the disk,
    # else the relay would run on untracked); b's relay stays down, as a lost machine's would.
    lab.duo("node", "stop", "b")
    assert process.stop(relay_files(duo.node("b"))["record"]) == "stopped"
    remove_tree(duo.node("b").paths.base)
    assert _serial(lab, "b") is None
    result = json.loads(lab.duo("--json", "backup", "restore", "--node", "b").stdout)
    assert result["from"] == "peer" and result["source"] in ("a", "c"), result
    # KSK and ZSK: the peers' copies are sealed (never leave their tokens), so the only source of b's
    # new private keys is the backup's bundles; the same DNSKEYs signing below prove they are the keys.
    assert result["keys"] == 2, result
    restored = dnskey_rrset(lab.signed("b", ZONE))
    assert restored == keys_before
    for node in NODES:
        assert dnskey_rrset(lab.signed(node, ZONE)) == keys_before, node
    assert _signer_www(lab, "b") == NEW_WWW  # the newest input (from the peer), not the snapshot's
    report = json.loads(lab.duo("--json", "check").stdout)
    assert report["ok"], report
    pairs = {(p["signatures_of"], p["keys_of"]) for p in report["zones"][ZONE]["cross_validated"]}
    assert {("b", "a"), ("b", "c"), ("a", "b"), ("c", "b")} <= pairs


# --- the trio grows into four ---------------------------------------------------------------------


GROWN = "127.0.14.20"  # node d, added to the running lab's config (an address of this module's range)


def test_a_fourth_node_joins_by_a_restore_from_a_peer_and_publishes_the_same_keys(lab: Lab) -> None:
    """An operator adds a signer to a running duo: a [nodes.d] table in the config, then `backup
    restore --node d` (token, KEK, keys from the backup's bundles, state from a peer). Its relay and
    watcher would follow (`lab up` again, services in a deployment): left out here, as `check` reads
    the signer itself and the lab's split secondaries are one per node a, b, c."""
    keys_before = dnskey_rrset(lab.signed("a", ZONE))
    config = Path(lab.config)
    table = (
        f'[nodes.d]\naddress = "{GROWN}"\nport = 53\nbase_dir = "nodes/d"\ninput_dir = "input"\n'
        'token_label = "DUO-LAB-D"\nworker_threads = 1\nsigner_threads = 1\n\n'
    )
    config.write_text(config.read_text().replace("[policy]\n", table + "[policy]\n", 1))
    result = json.loads(lab.duo("--json", "backup", "restore", "--node", "d").stdout)
    assert result["from"] == "peer" and result["keys"] == 2, result
    lab.status = json.loads(lab.duo("--json", "lab", "status", "--dir", str(lab.dir)).stdout)
    assert [n["name"] for n in lab.status["nodes"]] == ["a", "b", "c", "d"]
    assert dnskey_rrset(lab.signed("d", ZONE)) == keys_before
    assert _signer_www(lab, "d") == NEW_WWW
    report = json.loads(lab.duo("--json", "check").stdout)
    assert report["ok"], report
    checked = report["zones"][ZONE]["cross_validated"]
    pairs = {(p["signatures_of"], p["keys_of"]): p["failed"] for p in checked}
    for node in NODES:
        assert pairs[("d", node)] == 0 and pairs[(node, "d")] == 0
