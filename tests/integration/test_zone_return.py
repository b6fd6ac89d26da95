"""A zone that comes back after removal keeps its DS (issue 13), and a restore that would put older
data in front of the secondaries is refused; on a real duo (failover: ns1 from a, then b).

The lab's zone has a KSK and a ZSK; its DS is noted. `zone remove`, then the zone comes back by
`zone add` and by the watcher seeing its file again: both signers serve the same DNSKEY RRset as
before, the DS is the same, the secondary's copy validates with delv from the OLD DS, and `check
--ds OLD` is OK. With `zone add --new-keys` the DS changes and the command says so in one line.
Last (it wipes both nodes): `backup restore` from a snapshot older than what the secondary serves
is refused with the snapshot's age, and taken with `--allow-older`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from tests.integration.conftest import Lab
from tests.support.disk import remove_tree
from tests.support.dns_tools import delv
from tests.support.dnssec import dnskey_rrset
from tests.support.freshness import ZONE, content, fetch, has_record, write_like_an_editor

pytestmark = pytest.mark.integration

SERVED_WAIT = 60.0  # seconds for a returning zone to be signed and at the secondary


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab("127.0.2.20")


@pytest.fixture(scope="module")
def before(lab: Lab) -> dict[str, object]:
    """What the parent and the validators know of the zone before it is ever removed."""
    text = (lab.dir / "input" / ZONE).read_text()
    (lab.dir / "zone.saved").write_text(text)
    return {"ds": ds_lines(lab), "dnskeys": dnskeys(lab), "text": text}


def ds_lines(lab: Lab) -> list[str]:
    reply = json.loads(lab.duo("--json", "key", "ds", ZONE).stdout)
    assert reply["per_node"]["a"] == reply["per_node"]["b"] == reply["ds"], reply
    return list(reply["ds"])


def dnskeys(lab: Lab) -> set[str]:
    """The DNSKEY RRset, the same at both signers."""
    found = {n: {rd.to_text() for rd in dnskey_rrset(lab.signed(n, ZONE))} for n in ("a", "b")}
    assert found["a"] == found["b"], found
    return found["a"]


def ds_anchor(lab: Lab, ds: str) -> Path:
    """A delv trust anchor made from the DS the parent has (not from the zone's own DNSKEY)."""
    keytag, algorithm, digest_type, digest = ds.split()[3:7]
    path = lab.dir / "ds-anchor.conf"
    path.write_text(
        f'trust-anchors {{ {ZONE}. static-ds {keytag} {algorithm} {digest_type} "{digest}"; }};\n'
    )
    return path


def remove(lab: Lab) -> None:
    lab.duo("zone", "remove", ZONE, "--delete-file")
    assert ZONE not in lab.duo("zone", "list").stdout
    assert (lab.dir / "backup" / "state" / "removed-keys" / f"{ZONE}.json").exists()


def wait_back(lab: Lab, started: float) -> float:
    """Until the secondary serves the zone signed again: seconds since `started`."""
    sec = lab.status["secondaries"][0]
    deadline = time.monotonic() + SERVED_WAIT
    while (z := fetch(sec["address"], sec["port"], lab.tsig)) is None or not has_record(z, "www"):
        assert time.monotonic() < deadline, f"{ZONE} not back at the secondary within {SERVED_WAIT} s"
        time.sleep(0.5)
    return time.monotonic() - started


def assert_same_keys_and_valid(lab: Lab, before: dict[str, object]) -> None:
    assert dnskeys(lab) == before["dnskeys"]
    assert ds_lines(lab) == before["ds"]
    [ds] = before["ds"]  # type: ignore[misc]
    sec = lab.status["secondaries"][0]["address"]
    for name, rdtype in [("www." + ZONE, "A"), (ZONE, "DNSKEY"), (ZONE, "SOA")]:
        ok, out = delv(sec, ds_anchor(lab, ds), ZONE, name, rdtype)
        assert ok, out
    report = json.loads(lab.duo("--json", "check", "--ds", ds, check=False).stdout)
    assert report["ok"], json.dumps(report, indent=1)


def test_zone_add_brings_back_the_keys_from_before_removal(lab: Lab, before: dict[str, object]) -> None:
    remove(lab)
    started = time.monotonic()
    proc = lab.duo("zone", "add", ZONE, "--file", str(lab.dir / "zone.saved"))
    took = time.monotonic() - started
    assert "its keys from before removal are back" in proc.stdout and "the DS stays the same" in proc.stdout
    assert "NEW keys" not in proc.stdout + proc.stderr
    back = wait_back(lab, started)
    assert_same_keys_and_valid(lab, before)
    assert not (lab.dir / "backup" / "state" / "removed-keys" / f"{ZONE}.json").exists()
    print(f"zone add of the returning zone: {took:.1f} s; at the secondary {back:.1f} s after zone add")


def test_the_watcher_brings_back_the_keys_from_before_removal(lab: Lab, before: dict[str, object]) -> None:
    remove(lab)
    started = time.monotonic()
    write_like_an_editor(lab.dir / "input" / ZONE, str(before["text"]))
    back = wait_back(lab, started)
    assert_same_keys_and_valid(lab, before)
    log = (lab.dir / "log" / "watch-a.log").read_text()
    assert "its keys from before removal are back" in log
    print(f"the watcher's re-add: at the secondary {back:.1f} s after the file came back")


def test_new_keys_asked_for_change_the_ds_and_say_so(lab: Lab, before: dict[str, object]) -> None:
    remove(lab)
    proc = lab.duo("zone", "add", ZONE, "--file", str(lab.dir / "zone.saved"), "--new-keys")
    [line] = [ln for ln in proc.stdout.splitlines() if "NEW keys" in ln]
    assert line.startswith(f"zone {ZONE}: NEW keys, so the DS changes") and "(--new-keys)" in line
    wait_back(lab, time.monotonic())
    assert ds_lines(lab) != before["ds"] and not dnskeys(lab) & before["dnskeys"]  # type: ignore[operator]
    # The secondary may still hold its copy from before removal (same www record, old keys) until
    # the signers' NOTIFY brings the newly keyed version: check is OK once it has transferred it.
    deadline = time.monotonic() + SERVED_WAIT
    while not (report := json.loads(lab.duo("--json", "check", check=False).stdout))["ok"]:
        assert time.monotonic() < deadline, json.dumps(report, indent=1)
        time.sleep(2)


def test_restore_refuses_older_data_than_the_secondaries_serve(lab: Lab, before: dict[str, object]) -> None:
    """Both nodes lost, and the controller's newest-input record too (a restore run from another
    controller, or its state lost with them): the snapshot is all there is, and it is older than
    what ns1 serves. Refused, with the snapshot's age; taken with --allow-older.

    The update goes from a file outside the watched folder: a watcher's own update would be in
    the key origin's next snapshot (that one is not older)."""
    lab.duo("backup", "snapshot")
    newer = str(before["text"]) + "after-snapshot IN A 192.0.2.77\n"
    (lab.dir / "zone.newer").write_text(newer)
    lab.duo("zone", "update", ZONE, "--file", str(lab.dir / "zone.newer"))
    sec = lab.status["secondaries"][0]
    deadline = time.monotonic() + SERVED_WAIT
    while (z := fetch(sec["address"], sec["port"], lab.tsig)) is None or not has_record(z, "after-snapshot"):
        assert time.monotonic() < deadline, "ns1 did not take the update"
        time.sleep(0.5)
    served = content(z)
    duo = load_config(Path(lab.config))
    for node in ("a", "b"):
        lab.duo("node", "stop", node)
        remove_tree(duo.node(node).paths.base)
    (lab.dir / "backup" / "state" / "inputs" / f"{ZONE}.json").unlink()
    time.sleep(2)  # the snapshot is a few seconds old at least

    refused = lab.duo("backup", "restore", "--node", "a", check=False)
    assert refused.returncode == 1
    assert re.search(r"snapshot taken \d+m \d+s ago", refused.stderr), refused.stderr
    assert "older than what the secondaries serve" in refused.stderr and "--allow-older" in refused.stderr
    assert not duo.node("a").paths.base.exists() or not duo.node("a").paths.kasp_db.exists()  # untouched
    still = fetch(sec["address"], sec["port"], lab.tsig)
    assert still is not None and content(still) == served  # ns1 keeps the newer data

    taken = json.loads(lab.duo("--json", "backup", "restore", "--node", "a", "--allow-older").stdout)
    assert taken["from"] == "backup" and taken["snapshot_age"] and taken["older_allowed"]
    lab.duo("backup", "restore", "--node", "b")  # from a, its live peer
    report = json.loads(lab.duo("--json", "check", check=False).stdout)
    assert report["ok"], json.dumps(report, indent=1)
