"""Catalog zones and TSIG on every transfer through the relays (issue 16): real ODS, real BIND.

A failover lab (one secondary pulling from relay a, then relay b) and a split lab (ns1 from a's
relay, ns2 from b's). The secondaries' named.conf is written once, at lab up: zones reach them only
through the duo's catalogs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from functools import partial
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

from duo_ods.dns.query import soa_serial
from tests.integration.conftest import Lab, without_supervisor
from tests.support.dns_tools import DelvLoop, delv, ksk_of, write_trust_anchor
from tests.support.dnssec import axfr, dnskey_rrset

pytestmark = pytest.mark.integration

FAILOVER_BASE = "127.0.11.20"
SPLIT_BASE = "127.0.11.40"
EXAMPLE = "example.test"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "failover-relay.json"


def _remove_zones(config: str) -> str:
    return config.replace("create_keys = true", "create_keys = true\nremove_zones = true")


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    # Its failover test keeps a signer dead on purpose (killed, not `node stop`): no supervisor
    # restarts it (test_supervise.py tests that one).
    return make_lab(FAILOVER_BASE, edit=lambda toml: without_supervisor(_remove_zones(toml)))


@pytest.fixture(scope="module")
def split_lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab(SPLIT_BASE, "--split", edit=_remove_zones)


def _secondary(lab: Lab, name: str = "ns1") -> dict:  # type: ignore[type-arg]
    return next(s for s in lab.status["secondaries"] if s["name"] == name)  # type: ignore[no-any-return]


def _fingerprint(lab: Lab) -> dict[str, tuple[str, int]]:
    """Every config file of every secondary: its digest and mtime."""
    found = {}
    for path in sorted(lab.dir.glob("secondaries/*/*.conf")):
        found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return found


def _zone_text(zone: str, records: int = 0, www: str = "192.0.2.80") -> str:
    hosts = "".join(f"host{i:05d} IN A 192.0.2.{i % 250 + 1}\n" for i in range(records))
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 2026112900 3600 600 864000 300\n"
        f"@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A {www}\n{hosts}"
    )


def _anchor(lab: Lab, zone: str, tmp: Path) -> Path:
    signed = lab.signed("a", zone)
    return write_trust_anchor(tmp / f"{zone}.anchor", zone, ksk_of(dnskey_rrset(signed)))


def _wait(what: str, timeout: float, probe, interval: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)


def _validated(server: str, anchor: Path, zone: str, name: str, expect: str | None = None) -> bool:
    ok, out = delv(server, anchor, zone, name, "A")
    return ok and (expect is None or expect in out)


def _serves(server: str, zone: str) -> bool:
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        reply = dns.query.udp(query, server, timeout=1)
    except (dns.exception.DNSException, OSError):
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


def _axfr_from(address: str, port: int, zone: str, source: str) -> dns.zone.Zone | str:
    """An AXFR without the key from `source`: the zone, or why it failed."""
    try:
        messages = dns.query.xfr(address, zone, port=port, lifetime=10, source=source, relativize=False)
        return dns.zone.from_xfr(messages, relativize=False)
    except (dns.exception.DNSException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _relay(lab: Lab, node: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in lab.status["relays"] if r["node"] == node)  # type: ignore[no-any-return]


# --- failover lab ----------------------------------------------------------------------------


def test_lab_status_lists_a_relay_per_node(lab: Lab) -> None:
    relays = {r["node"]: r for r in lab.status["relays"]}
    assert set(relays) == {"a", "b"}
    for node, relay in relays.items():
        assert isinstance(relay["pid"], int) and relay["port"] == 1053
        assert relay["address"] == lab.node(node)["address"]
        assert relay["catalog"] == "lab.catalog.invalid" and relay["members"] >= 1


def test_dropped_zone_reaches_untouched_secondary_and_leaves_when_removed(lab: Lab, tmp_path: Path) -> None:
    before = _fingerprint(lab)
    assert before, "the secondary's config files"
    zone = "dropped.test"
    (lab.dir / "input" / zone).write_text(_zone_text(zone))
    anchor = _anchor(lab, zone, tmp_path)  # signed on a ...
    lab.signed("b", zone)  # ... and on b
    signed_at = time.monotonic()
    ns1 = _secondary(lab)["address"]
    _wait("validated at ns1", 60, lambda: _validated(ns1, anchor, zone, f"www.{zone}", "192.0.2.80"))
    took = time.monotonic() - signed_at
    assert took < 60
    print(f"dropped zone validated at the secondary {took:.1f} s after it was signed on both nodes")
    # Both relays list it in their catalog before it goes (ns1 may have it from relay a before relay b's
    # sync took it in): the next test counts on each relay's catalog having moved.
    for node in ("a", "b"):
        _wait(f"{zone} in relay {node}'s catalog", 30, partial(_member_of, lab, node, zone))
    (lab.dir / "input" / zone).unlink()
    _wait("gone from ns1", 60, lambda: not _serves(ns1, zone))
    assert _fingerprint(lab) == before, "the secondary's named config was touched after lab up"
    log = Path(_secondary(lab)["log"]).read_text()
    assert f"catz: adding zone '{zone}' from catalog 'lab.catalog.invalid'" in log
    assert f"catz: deleting zone '{zone}' from catalog 'lab.catalog.invalid'" in log


def _member_of(lab: Lab, node: str, zone: str) -> bool:
    state = json.loads((Path(lab.node(node)["base_dir"]) / "relay" / "relay.json").read_text())
    return zone in state["members"]


def _served_as_recorded(lab: Lab, node: str) -> tuple[dict, dns.zone.Zone] | None:  # type: ignore[type-arg]
    """The relay's state file and its catalog, once named serves the serial the file has (the
    watcher's relay sync writes the file, then signals named, which reloads a moment later)."""
    relay = _relay(lab, node)
    state = json.loads((Path(lab.node(node)["base_dir"]) / "relay" / "relay.json").read_text())
    catalog = axfr(relay["address"], relay["port"], "lab.catalog.invalid", lab.tsig)
    soa = catalog.find_rdataset("lab.catalog.invalid.", "SOA")[0]
    return (state, catalog) if soa.serial == state["serial"] else None


def test_catalog_serial_moves_forward_on_each_relay(lab: Lab) -> None:
    for node in ("a", "b"):
        relay = _relay(lab, node)
        state, catalog = _wait(
            f"relay {node} serves its recorded catalog serial", 15, partial(_served_as_recorded, lab, node)
        )
        assert state["serial"] > relay["catalog_serial"], (node, state, relay)  # members came and went
        assert '"2"' in str(catalog.find_rdataset("version.lab.catalog.invalid.", "TXT"))


def test_a_5000_record_zone_reaches_the_secondary_over_tsig(lab: Lab) -> None:
    zone = "big5k.test"
    (lab.dir / "input" / zone).write_text(_zone_text(zone, 5000))
    ns1 = _secondary(lab)
    copy = _wait("big zone at ns1", 120, lambda: _try_axfr(ns1["address"], zone, lab), interval=1)
    assert len(copy.nodes) > 5000
    log = Path(ns1["log"]).read_text()
    done = re.findall(rf"'{zone}/IN' from ([\d.]+)#1053: Transfer completed: (\d+) messages", log)
    assert done and max(int(n) for _, n in done) > 1, "the transfer must have needed many messages"
    assert re.search(rf"'{zone}/IN' from [\d.]+#1053: connected using [\d.#]+ TSIG duo-transfer", log)


def _try_axfr(address: str, zone: str, lab: Lab) -> dns.zone.Zone | None:
    try:
        return axfr(address, 53, zone, lab.tsig)
    except (dns.exception.DNSException, OSError):
        return None


def test_relays_refuse_an_axfr_without_the_key(lab: Lab) -> None:
    ns1 = _secondary(lab)["address"]
    for node in ("a", "b"):
        relay = _relay(lab, node)
        got = _axfr_from(relay["address"], relay["port"], EXAMPLE, ns1)
        assert isinstance(got, str) and "REFUSED" in got.upper(), (node, got)
        assert axfr(relay["address"], relay["port"], EXAMPLE, lab.tsig).nodes  # with the key: served


def test_signers_serve_only_their_relay(lab: Lab) -> None:
    ns1 = _secondary(lab)["address"]
    for node, other in (("a", "b"), ("b", "a")):
        signer = lab.node(node)
        for source in (ns1, _relay(lab, other)["address"]):
            got = _axfr_from(signer["address"], signer["port"], EXAMPLE, source)
            assert isinstance(got, str), (node, source, "served without the key")
        relay = _relay(lab, node)["address"]
        served = _axfr_from(signer["address"], signer["port"], EXAMPLE, relay)
        assert isinstance(served, dns.zone.Zone), (node, served)


def _signer_pid(lab: Lab, node: str) -> int:
    record = json.loads((Path(lab.node(node)["base_dir"]) / "state" / "signerd.json").read_text())
    return int(record["pid"])


def _update(lab: Lab, tmp_path: Path, www: str, missed: str | None) -> None:
    path = tmp_path / f"{EXAMPLE}.{www}"
    source = (lab.dir / "input" / EXAMPLE).read_text()
    path.write_text(re.sub(r"(?m)^(www\s+IN A\s+)\S+$", rf"\g<1>{www}", source))
    proc = lab.duo("zone", "update", EXAMPLE, "--file", str(path), check=missed is None)
    if missed is not None:
        assert proc.returncode == 1 and f"node {missed}" in proc.stderr, proc.stderr


def _serial(lab: Lab, node: str) -> int | None:
    n = lab.node(node)
    return soa_serial(n["address"], n["port"], EXAMPLE, lab.tsig, timeout=0.5)


def _step(lab: Lab, tmp_path: Path, anchor: Path, www: str, missed: str | None) -> dict[str, float]:
    """One update with signer a as it is: seconds from its start to the update command's end, to signer
    b serving it, and to the secondary serving it validated; and the secondary's delay after b."""
    ns1 = _secondary(lab)["address"]
    before = _serial(lab, "b")
    start = time.monotonic()
    _update(lab, tmp_path, www, missed)
    updated = time.monotonic()
    _wait("b signs", 30, lambda: (s := _serial(lab, "b")) is not None and s != before, interval=0.05)
    at_b = time.monotonic()
    _wait("at ns1", 30, lambda: _validated(ns1, anchor, EXAMPLE, f"www.{EXAMPLE}", www), interval=0.05)
    done = time.monotonic()
    return {"update": updated - start, "signer b": at_b - start, "secondary": done - start,
            "delay after b": done - at_b}  # fmt: skip


def test_signer_killed_or_hung_secondary_serves_and_takes_the_other_side(lab: Lab, tmp_path: Path) -> None:
    anchor = _anchor(lab, EXAMPLE, tmp_path)
    ns1 = _secondary(lab)["address"]
    queries = [(f"www.{EXAMPLE}", "A"), (f"nope.{EXAMPLE}", "A"), (EXAMPLE, "SOA")]
    loop = DelvLoop(ns1, anchor, EXAMPLE, queries).start()
    timings: dict[str, dict[str, float]] = {}
    try:
        timings["both up"] = _step(lab, tmp_path, anchor, "192.0.2.190", None)
        hung = _signer_pid(lab, "a")
        os.kill(hung, signal.SIGSTOP)
        try:
            timings["signer a hung (SIGSTOP)"] = _step(lab, tmp_path, anchor, "192.0.2.191", "a")
        finally:
            os.kill(hung, signal.SIGCONT)
        os.kill(_signer_pid(lab, "a"), signal.SIGKILL)
        timings["signer a killed (SIGKILL)"] = _step(lab, tmp_path, anchor, "192.0.2.193", "a")
    finally:
        loop.stop()
    print(f"failover through the relays: {json.dumps(timings, indent=1)}")
    RESULTS.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "delv_asked": loop.asked, "delv_failed": len(loop.failures),
                                   "timings": timings}, indent=1) + "\n")  # fmt: skip
    assert loop.failures == [], loop.failures
    assert loop.asked > 5
    for situation, t in timings.items():
        assert t["delay after b"] <= 5.0, (situation, t)


# --- split lab -------------------------------------------------------------------------------


def test_split_each_secondary_gets_members_from_its_own_signer(split_lab: Lab, tmp_path: Path) -> None:
    zone = "splitdrop.test"
    (split_lab.dir / "input" / zone).write_text(_zone_text(zone))
    anchor = _anchor(split_lab, zone, tmp_path)
    wanted = {"ns1": ("a", "a.lab.catalog.invalid"), "ns2": ("b", "b.lab.catalog.invalid")}
    for name, (node, catalog) in wanted.items():
        sec = _secondary(split_lab, name)
        _wait(f"{zone} at {name}", 60, lambda s=sec: _validated(s["address"], anchor, zone, f"www.{zone}"))
        log = Path(sec["log"]).read_text()
        assert f"catz: adding zone '{zone}' from catalog '{catalog}'" in log
        relay = _relay(split_lab, node)["address"]
        sources = set(re.findall(r"transfer of '[^']+' from ([\d.]+)#\d+: Transfer completed", log))
        assert sources == {relay}, (name, sources)
        other = "b" if node == "a" else "a"
        assert f"{other}.lab.catalog.invalid" not in log
