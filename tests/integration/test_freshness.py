"""The newest data always wins (issue 13), on a real duo: a node that missed an update catches up,
and nothing stale ever reaches a secondary.

One lab for the module (failover: ns1 pulls from a, then b). The tests run in order on it; a
sampler thread AXFRs every signer and secondary every half second the whole time and records the
SOA serial and a digest of the content (the zone without RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY and
SOA). The last failover test asserts what it saw: no secondary ever went back to older content,
and no serial was ever seen with two different contents. A split-mode lab (ns1 from a, ns2 from b)
repeats the main scenario at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.dns.query import soa_serial
from duo_ods.transport import transport_for
from duo_ods.zones.manage import notify_secondaries
from tests.integration.conftest import Lab
from tests.support.freshness import (
    CATCH_UP,
    ZONE,
    Sampler,
    Versions,
    check_ok,
    content,
    fetch,
    servers,
    update,
    version_digest,
    wait_newest,
    write_like_an_editor,
)

pytestmark = pytest.mark.integration

# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab("127.0.0.210")


@pytest.fixture(scope="module")
def sampler(lab: Lab) -> Iterator[Sampler]:
    s = Sampler(lab)
    s.expect(version_digest(lab, (lab.dir / "input" / ZONE).read_text()))
    thread = s.start()
    yield s
    s.stop.set()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def versions(lab: Lab) -> Versions:
    return Versions(lab)


def partitioned(lab: Lab) -> str:
    """A config in which node b's host cannot be reached: ssh to a port where nothing listens (what a
    controller sees when the network to b is down). Same lab folder, so the same records and keys."""
    path = lab.dir / "duo-partition.toml"
    if not path.exists():
        (lab.dir / "secrets" / "unused-ssh-key").write_text("")
        text = Path(lab.config).read_text()
        ssh = (
            'transport = "ssh"\nssh = { host = "127.0.0.1", port = 9, '
            'identity_file = "secrets/unused-ssh-key", known_hosts_file = "secrets/unused-ssh-key", '
            "connect_timeout = 2, op_timeout = 5 }\n"
        )
        path.write_text(text.replace("[nodes.b]\n", "[nodes.b]\n" + ssh, 1))
    return str(path)


def unsigned_digest(lab: Lab, node: str) -> str:
    path = Path(lab.node(node)["base_dir"]) / "var" / "unsigned" / ZONE
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the scenarios ------------------------------------------------------------------------


def test_update_while_b_is_stopped_reaches_b_before_it_serves_again(
    lab: Lab, sampler: Sampler, versions: Versions
) -> None:
    started = time.monotonic()
    lab.duo("node", "stop", "b")
    rc, result, stderr = update(lab, sampler, versions.next("fresh1"))
    assert rc == 1
    assert "node b missed the update" in stderr and "it catches up when it returns" in stderr
    assert result["nodes"]["a"]["status"] == "signed"
    assert result["nodes"]["b"]["status"] == "stored"  # b's host answers: its input is written now
    a_new = result["served"]["a"]

    back = time.monotonic()
    lab.duo("node", "start", "b")
    serials = wait_newest(lab, sampler, "fresh1")
    caught_up = time.monotonic() - back
    assert caught_up <= CATCH_UP, f"{caught_up:.1f} s from node start until everything serves the update"
    assert serials["signer b"] >= a_new, serials
    check_ok(lab)
    assert sampler.problems == []
    print(
        f"stop/update/start: {time.monotonic() - started:.1f} s, caught up {caught_up:.1f} s after node start"
    )


def test_update_missed_by_an_unreachable_stopped_b_is_caught_up(
    lab: Lab, sampler: Sampler, versions: Versions
) -> None:
    lab.duo("node", "stop", "b")
    before = unsigned_digest(lab, "b")
    rc, result, stderr = update(lab, sampler, versions.next("fresh2"), config=partitioned(lab))
    assert rc == 1 and "node b missed the update (b: not reached)" in stderr
    assert result["nodes"]["b"]["status"] == "missed" and result["missed"] == ["b"]
    assert unsigned_digest(lab, "b") == before  # nothing reached b

    # b's host answers again, its daemons are still down: catch-up writes the newest input first.
    plan = json.loads(lab.duo("--json", "zone", "catch-up", "--dry-run").stdout)
    assert [(s["node"], s["action"]) for s in plan["steps"]] == [("b", "write")]
    lab.duo("zone", "catch-up")
    assert unsigned_digest(lab, "b") != before
    lab.duo("node", "start", "b")
    wait_newest(lab, sampler, "fresh2")
    check_ok(lab)
    assert json.loads(lab.duo("--json", "zone", "catch-up", "--dry-run").stdout)["steps"] == []
    assert sampler.problems == []


def test_update_missed_by_an_unreachable_running_b_is_caught_up(
    lab: Lab, sampler: Sampler, versions: Versions
) -> None:
    rc, result, _ = update(lab, sampler, versions.next("fresh3"), config=partitioned(lab))
    assert rc == 1 and result["nodes"]["b"]["status"] == "missed"
    caught = json.loads(lab.duo("--json", "zone", "catch-up", "b").stdout)
    assert [(s["node"], s["action"]) for s in caught["steps"]] == [("b", "sign")]
    assert caught["ok"] and caught["failed"] == {}
    serials = wait_newest(lab, sampler, "fresh3")
    assert serials["signer b"] >= serials["signer a"] or serials["signer b"] == max(serials.values())
    check_ok(lab)
    assert sampler.problems == []


def test_zone_list_key_list_and_lab_status_with_b_stopped(lab: Lab) -> None:
    lab.duo("node", "stop", "b")
    try:
        zones = lab.duo("zone", "list")
        assert ZONE in zones.stdout and "node b: DOWN or unreachable" in zones.stdout
        listed = json.loads(lab.duo("--json", "zone", "list").stdout)
        assert list(listed["down"]) == ["b"] and listed["zones"][0]["nodes"].keys() == {"a"}
        keys = json.loads(lab.duo("--json", "key", "list").stdout)
        assert len(keys["keys"]) == 2 and keys["ok"]
        assert all(k["nodes"]["b"]["down"] and k["nodes"]["a"]["state"] for k in keys["keys"])
        assert "(down)" in lab.duo("key", "list").stdout
        status = json.loads(lab.duo("--json", "lab", "status", "--dir", str(lab.dir)).stdout)
        assert {n["name"]: n["down"] for n in status["nodes"]} == {"a": False, "b": True}
    finally:
        lab.duo("node", "start", "b")


def test_zone_remove_refuses_while_its_file_is_watched(lab: Lab) -> None:
    zone, path = "gone.test", lab.dir / "input" / "gone.test"
    outside = lab.dir / "gone.test.txt"
    outside.write_text((lab.dir / "input" / ZONE).read_text().replace(ZONE, zone))
    lab.duo("zone", "add", zone, "--file", str(outside))
    outside.rename(path)  # now the watchers watch its file too (they find the zone there already)
    proc = lab.duo("zone", "remove", zone, check=False)
    assert proc.returncode == 1
    assert "its file is still in a watched input directory" in proc.stderr
    assert "delete the file first or pass --delete-file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert zone in lab.duo("zone", "list").stdout  # nothing removed

    lab.duo("zone", "remove", zone, "--delete-file")
    assert not path.exists()
    time.sleep(3)  # the watchers saw the file go: they must not bring the zone back
    assert zone not in lab.duo("zone", "list").stdout


def edit_while_b_is_stopped(lab: Lab, sampler: Sampler, versions: Versions, owner: str) -> None:
    """The issue's watcher case: the edited file lands in the watched folder while b is stopped (a's
    watcher signs it, b's stores it for b), then b comes back: every copy serves it."""
    lab.duo("node", "stop", "b")
    text = versions.next(owner).read_text()
    sampler.expect(version_digest(lab, text))
    write_like_an_editor(lab.dir / "input" / ZONE, text)
    deadline = time.monotonic() + CATCH_UP
    while (latest := sampler.latest("signer a")) is None or latest[1] != sampler.versions[-1]:
        assert time.monotonic() < deadline, "a's watcher did not sign the edited file"
        time.sleep(0.3)
    back = time.monotonic()
    lab.duo("node", "start", "b")
    wait_newest(lab, sampler, owner)
    took = time.monotonic() - back
    print(f"file edited while b was stopped: every copy serves it {took:.1f} s after node start")
    check_ok(lab)
    assert sampler.problems == []


def test_file_edited_while_b_is_stopped_reaches_b_when_it_starts(
    lab: Lab, sampler: Sampler, versions: Versions
) -> None:
    edit_while_b_is_stopped(lab, sampler, versions, "fresh5")


def test_no_secondary_ever_went_back_to_older_content(lab: Lab, sampler: Sampler) -> None:
    time.sleep(2)
    with sampler.lock:
        counts = {w: len(s) for w, s in sampler.samples.items()}
    assert set(counts) == set(servers(lab)) and min(counts.values()) > 20, counts
    assert len(sampler.versions) == 5
    assert sampler.problems == []


def test_a_stale_copy_on_top_is_outranked_by_catch_up(lab: Lab, sampler: Sampler, versions: Versions) -> None:
    """The issue's worst case, made on purpose (so after the sampler's verdict): b missed an update,
    came back by itself (not through `node start`, as a reboot would) and re-signed its OLD input
    at a serial above the newest data, so the failover secondary took the stale copy. ODS 2.1.12
    gives no hook to stop that; `zone catch-up` (and the watcher's periodic one) outranks it."""
    sampler.stop.set()
    duo = load_config(Path(lab.config))
    lab.duo("node", "stop", "b")
    rc, result, _ = update(lab, sampler, versions.next("fresh4"), config=partitioned(lab))
    assert rc == 1 and result["nodes"]["b"]["status"] == "missed"
    newest = sampler.versions[-1]
    transport_for(duo).call("b", "start", {})  # as systemd would: no catch-up first
    # ods-signerd raises its serial on every re-sign: b drifts above the newest data with old data.
    top = max(
        s for s in (soa_serial(n["address"], n["port"], ZONE, lab.tsig) for n in lab.status["nodes"]) if s
    )
    transport_for(duo).call("b", "zone-resign", {"zone": ZONE, "serial": top + 3})
    b = lab.node("b")
    deadline = time.monotonic() + CATCH_UP
    while soa_serial(b["address"], b["port"], ZONE, lab.tsig) != top + 3:
        assert time.monotonic() < deadline, "b did not re-sign its old input"
        time.sleep(0.3)
    notify_secondaries(duo, ZONE)
    ns1 = lab.status["secondaries"][0]
    while (served := fetch(ns1["address"], ns1["port"], lab.tsig)) is None or content(served)[0] != top + 3:
        assert time.monotonic() < deadline, "the secondary did not take b's stale copy"
        time.sleep(0.5)
    assert content(served)[1] != newest  # the stale copy won at the secondary: the failure mode

    caught = json.loads(lab.duo("--json", "zone", "catch-up").stdout)
    assert [(s["node"], s["action"]) for s in caught["steps"]] == [("b", "sign")]
    [done] = caught["done"].values()
    assert done["target"] > top + 3  # above the stale copy, not beside it
    deadline = time.monotonic() + CATCH_UP
    while (served := fetch(ns1["address"], ns1["port"], lab.tsig)) is None or content(served)[1] != newest:
        assert time.monotonic() < deadline, "the secondary did not get the newest data back"
        time.sleep(0.5)
    check_ok(lab)


# --- split mode: ns1 from a, ns2 from b -----------------------------------------------------


def test_split_mode_b_stopped_update_start(make_lab: Callable[..., Lab]) -> None:
    """In split mode ns2 has only b: it gets the update only through b's catch-up."""
    split = make_lab("127.0.0.220", "--split")
    s = Sampler(split)
    s.expect(version_digest(split, (split.dir / "input" / ZONE).read_text()))
    thread = s.start()
    try:
        v = Versions(split)
        split.duo("node", "stop", "b")
        rc, result, stderr = update(split, s, v.next("fresh1"))
        assert rc == 1 and result["nodes"]["b"]["status"] == "stored" and "node b missed" in stderr
        split.duo("node", "start", "b")
        wait_newest(split, s, "fresh1")
        check_ok(split)
        edit_while_b_is_stopped(split, s, v, "fresh2")  # ns2 has only b: it gets it through b's catch-up
        time.sleep(1)
        assert s.problems == []
    finally:
        s.stop.set()
        thread.join(timeout=10)
