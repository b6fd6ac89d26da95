"""The file-watch trigger on the lab (issue 6): drop, edit, break, fix, restart."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from duo_ods import process
from tests.integration.conftest import Lab, run_duo
from tests.support.dns_tools import delv, ksk_of, write_trust_anchor
from tests.support.dnssec import dnskey_rrset

pytestmark = pytest.mark.integration

ZONE = "dropped.test"


def zone_file(address: str, serial: int = 2026112800, extra: str = "") -> str:
    return (
        f"$ORIGIN {ZONE}.\n$TTL 300\n@ IN SOA ns1 hostmaster {serial} 3600 600 864000 300\n"
        f"@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A {address}\n{extra}"
    )


def write_like_an_editor(path: Path, text: str) -> None:
    """Write a temp file next to it, then rename over it: the watcher sees one complete file."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.3)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab("127.0.0.130")


@pytest.fixture(scope="module")
def dropped(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Drop a new zone file: both nodes sign it with shared keys; returns (its file, a trust anchor)."""
    path = Path(lab.status["input_dir"]) / ZONE
    write_like_an_editor(path, zone_file("192.0.2.1"))
    zones = {n: lab.signed(n, ZONE) for n in ("a", "b")}
    assert dnskey_rrset(zones["a"]) == dnskey_rrset(zones["b"])
    anchor = tmp_path_factory.mktemp("ta") / "anchor.conf"
    return path, write_trust_anchor(anchor, ZONE, ksk_of(dnskey_rrset(zones["a"])))


def served(lab: Lab, anchor: Path, address: str) -> bool:
    ok, out = delv(lab.status["secondaries"][0]["address"], anchor, ZONE, f"www.{ZONE}", "A")
    return ok and address in out


def test_status_names_the_watchers(lab: Lab) -> None:
    watchers = {w["node"]: w for w in lab.status["watchers"]}
    assert set(watchers) == {"a", "b"}
    assert all(
        isinstance(w["pid"], int) and w["input_dir"] == lab.status["input_dir"] for w in watchers.values()
    )


def test_new_zone_and_its_keys_reach_a_backup_snapshot(lab: Lab, dropped: tuple[Path, Path]) -> None:
    """The key origin's watcher snapshots after its changes (the lab: at most every 10 s)."""
    snapshots = lab.dir / "backup" / "snapshots"

    def snapshot_has_keys() -> bool:
        latest = sorted(snapshots.glob("*.json"))
        if not latest:
            return False
        zones = {z["zone"]: z for z in json.loads(latest[-1].read_text())["zones"]}
        return ZONE in zones and len((zones[ZONE]["states"] or {}).get("keys", [])) == 2

    wait_for("a snapshot with the new zone's keys", snapshot_has_keys, timeout=60)


def test_drop_edit_break_fix(lab: Lab, dropped: tuple[Path, Path]) -> None:
    path, anchor = dropped
    wait_for("the new zone validated at the secondary", lambda: served(lab, anchor, "192.0.2.1"))

    write_like_an_editor(path, zone_file("192.0.2.2"))
    took = wait_for("the edit validated at the secondary", lambda: served(lab, anchor, "192.0.2.2"))
    assert took < 15

    write_like_an_editor(path, zone_file("192.0.2.3", extra="bad IN A 300.1.2.3\n"))
    listing: dict = {}  # type: ignore[type-arg]

    def error_reported() -> bool:
        nonlocal listing
        listing = next(
            z for z in json.loads(lab.duo("--json", "zone", "list").stdout)["zones"] if z["zone"] == ZONE
        )
        return all((n.get("input") or {}).get("status") == "error" for n in listing["nodes"].values())

    wait_for("the error in zone list", error_reported)
    message = listing["nodes"]["a"]["input"]["message"]
    assert message.startswith(f"{path}:7: "), message
    time.sleep(2)
    assert served(lab, anchor, "192.0.2.2"), "the last good data must still be served"
    assert "192.0.2.3" not in (Path(lab.node("a")["base_dir"]) / "var" / "unsigned" / ZONE).read_text()

    write_like_an_editor(path, zone_file("192.0.2.4"))
    wait_for("recovery after the fix", lambda: served(lab, anchor, "192.0.2.4"))
    assert f"ERROR duo_ods.watch.service: {path}:7: " in Path(lab.status["watchers"][0]["log"]).read_text()


def test_restart_resigns_nothing_and_sigterm_is_clean(lab: Lab, dropped: tuple[Path, Path]) -> None:
    """The serial alone cannot tell (the enforcer re-signs when key states move on): the watchers must
    do nothing on restart, and the nodes' input files must not be rewritten."""
    inputs = [Path(lab.node(n)["base_dir"]) / "var" / "unsigned" / ZONE for n in ("a", "b")]
    # The test above waits for one node to serve its fix; the other's watcher may still be writing it.
    wait_for("the same input on both nodes", lambda: len({p.read_bytes() for p in inputs}) == 1)
    before = [p.stat().st_mtime_ns for p in inputs]
    records = sorted(lab.dir.glob("state/watch-*.json"))
    logs = sorted(lab.dir.glob("log/watch-*.log"))
    for record in records:
        pid = json.loads(record.read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
        wait_for("the watcher to exit", lambda pid=pid: process.proc_start_time(pid) is None, timeout=15)
    for log in logs:
        assert log.read_text().rstrip().endswith("stopped"), log
    sizes = [log.stat().st_size for log in logs]
    run_duo("lab", "up", "--dir", str(lab.dir), "--base-address", "127.0.0.130")
    assert all(process.running(r) for r in records)
    time.sleep(5)
    for log, size in zip(logs, sizes, strict=True):
        after = log.read_text()[size:]
        assert "watching" in after, after
        assert " added " not in after and " updated " not in after, after
    assert [p.stat().st_mtime_ns for p in inputs] == before
