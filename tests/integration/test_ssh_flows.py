"""The key flows over the ssh transport (issue 14): create, rollover and restore of a wiped node.

One lab on 127.0.5.10 (nodes a and b on .11 and .12) with the fast test policy (rollovers in
minutes), an sshd in front of each node (tests/support/ssh_lab.py). Every command here runs
with a controller config whose nodes are reached over ssh only; what the nodes hold is checked
through the local transport and the daemons' own clients, independent of ssh. The tests run in
order and build on each other.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.dnssec
import pytest

from duo_ods import process
from duo_ods.config.load import load_config
from tests.integration.conftest import Lab
from tests.support.disk import remove_tree
from tests.support.dnssec import cross_validate, dnskey_rrset
from tests.support.fast_policy import fast_policy
from tests.support.ssh_lab import SshLab, sshd_in_front

pytestmark = pytest.mark.integration

BASE = "127.0.5.10"
NODES = {"a": "127.0.5.11", "b": "127.0.5.12"}
ZONE = "flows.test"
ZONE_TEXT = f"""$ORIGIN {ZONE}.
$TTL 20
@ IN SOA ns1 hostmaster 1 3600 600 864000 20
@ IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.80
"""
PUBLISH_TIMEOUT = 240.0
AGREE_TIMEOUT = 90.0  # the fast policy moves key states every few seconds, each enforcer on its own


@pytest.fixture(scope="module")
def ssh_lab(make_lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    lab: Lab = make_lab(BASE, edit=fast_policy)
    with sshd_in_front(lab, tmp_path_factory.mktemp("ssh-flows"), NODES) as ssh:
        yield ssh


@pytest.fixture(scope="module")
def config(ssh_lab: SshLab) -> str:
    return ssh_lab.config("duo-ssh")


def enforcer_keys(lab: Lab, node: str, zone: str) -> dict[str, str]:
    """locator -> role, as the node's own `ods-enforcer key list` has them (not through ods-duo)."""
    out = lab.enforcer(node, "key", "list", "-v", "-a")
    rows = [line.split() for line in out.splitlines() if line.startswith(zone + " ")]
    return {row[-3]: row[1] for row in rows}


def enforcer_keys_or_none(lab: Lab, node: str, zone: str) -> dict[str, str] | None:
    """The node's keys, or None while its enforcer does not answer (a half-built node is stopped)."""
    try:
        return enforcer_keys(lab, node, zone)
    except subprocess.CalledProcessError:
        return None


def published_tags(lab: Lab, node: str, zone: str) -> set[int]:
    return {dns.dnssec.key_id(k) for k in dnskey_rrset(lab.signed(node, zone))}


def key_rows(listing: dict[str, Any]) -> set[tuple[str, str, str, int, tuple[str, ...]]]:
    return {
        (r["zone"], r["locator"], r["role"], r["keytag"], tuple(sorted(r["nodes"]))) for r in listing["keys"]
    }


def accepted(ssh_lab: SshLab) -> dict[str, int]:
    return {n: s.accepted() for n, s in ssh_lab.sshd.items()}


def assert_went_over_ssh(ssh_lab: SshLab, before: dict[str, int], commands: int) -> None:
    """One connection per node per command (the transport keeps one agent per node)."""
    for node, count in accepted(ssh_lab).items():
        assert count == before[node] + commands, ssh_lab.logs()


def test_key_create_over_ssh(ssh_lab: SshLab, config: str, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    zone_file = tmp_path / ZONE
    zone_file.write_text(ZONE_TEXT)
    before = accepted(ssh_lab)
    ssh_lab.duo(config, "zone", "add", ZONE, "--file", str(zone_file))
    created = json.loads(ssh_lab.duo(config, "--json", "key", "create", ZONE).stdout)["keys"]
    assert_went_over_ssh(ssh_lab, before, 2)
    assert sorted(k["role"] for k in created) == ["KSK", "ZSK"]
    want = {k["locator"]: k["role"] for k in created}
    for node in NODES:
        assert enforcer_keys(lab, node, ZONE) == want, node
    assert dnskey_rrset(lab.signed("a", ZONE)) == dnskey_rrset(lab.signed("b", ZONE))


def test_zsk_rollover_over_ssh(ssh_lab: SshLab, config: str) -> None:
    lab = ssh_lab.lab
    old = {loc for loc, role in enforcer_keys(lab, "a", ZONE).items() if role == "ZSK"}
    before = accepted(ssh_lab)
    out = json.loads(ssh_lab.duo(config, "--json", "key", "rollover", ZONE, "--role", "zsk").stdout)
    assert_went_over_ssh(ssh_lab, before, 1)
    assert out["spread"] < 1.0, "both enforcers must start the rollover within the same second"
    assert sorted(out["started"]) == ["a", "b"]
    new = out["locator"]
    assert new not in old
    for node in NODES:
        keys = enforcer_keys(lab, node, ZONE)
        assert keys[new] == "ZSK", node
        assert old <= set(keys), node  # the old ZSK stays until the new one has taken over
    # Both signers publish the successor (the fast policy's pre-publication takes seconds).
    deadline = time.monotonic() + PUBLISH_TIMEOUT
    tags = {n: published_tags(lab, n, ZONE) for n in NODES}
    while not all(out["keytag"] in t for t in tags.values()):
        assert time.monotonic() < deadline, f"key tag {out['keytag']} not published: {tags}"
        time.sleep(3)
        tags = {n: published_tags(lab, n, ZONE) for n in NODES}
    # key list over ssh names the same keys on the same nodes as the local transport (their states
    # move on between the two calls, and the two enforcers may be a moment apart: until they agree)
    deadline = time.monotonic() + AGREE_TIMEOUT
    over_ssh = json.loads(ssh_lab.duo(config, "--json", "key", "list").stdout)
    while not over_ssh["ok"]:
        differ = [r for r in over_ssh["keys"] if r["differs"]]
        assert time.monotonic() < deadline, f"the nodes' key states still differ: {differ}"
        time.sleep(3)
        over_ssh = json.loads(ssh_lab.duo(config, "--json", "key", "list").stdout)
    local = json.loads(lab.duo("--json", "key", "list").stdout)
    assert key_rows(over_ssh) == key_rows(local)
    rows = [r for r in over_ssh["keys"] if r["zone"] == ZONE]
    assert new in {r["locator"] for r in rows}
    assert all(set(r["nodes"]) == {"a", "b"} for r in rows)


def test_wiped_node_is_restored_over_ssh(ssh_lab: SshLab, config: str) -> None:
    lab = ssh_lab.lab
    duo = load_config(Path(lab.config))
    zones = ("example.test", ZONE)
    # The lab's watchers reach the nodes through the local transport (a node on this machine is
    # confirmed by construction): they would finish the journalled restore themselves (key resume)
    # while the operator checks the fingerprint. This test is about the ssh controller alone.
    for record in sorted((lab.dir / "state").glob("watch-*.json")):
        assert process.stop(record) in ("stopped", "not running")
    ssh_lab.duo(config, "node", "stop", "b")
    remove_tree(duo.node("b").paths.base)  # the node's disk is lost: token, database, zones
    # b is reached over ssh: the KEK goes to its transport key only once the operator confirmed
    # that key's fingerprint, as `kek offer` shows it on b itself (the local transport there).
    refused = ssh_lab.duo(config, "backup", "restore", "--node", "b", check=False)
    assert refused.returncode == 1
    assert "its transport key must be confirmed" in refused.stderr, refused.stderr
    offered = json.loads(lab.duo("--json", "kek", "offer", "--node", "b").stdout)["fingerprint"]
    assert f"--confirm b={offered}" in refused.stderr, refused.stderr
    wrong = ssh_lab.duo(config, "backup", "restore", "--node", "b", "--confirm", "b=" + "0" * 64, check=False)
    assert wrong.returncode == 1
    assert f"its transport key's fingerprint is {offered}" in wrong.stderr, wrong.stderr
    assert not enforcer_keys_or_none(lab, "b", ZONE), "no key reaches b before the KEK is confirmed"
    before = accepted(ssh_lab)
    result = json.loads(
        ssh_lab.duo(config, "--json", "backup", "restore", "--node", "b", "--confirm", f"b={offered}").stdout
    )
    assert_went_over_ssh(ssh_lab, before, 1)
    assert "finished the interrupted backup restore of node b" in result["resumed"]
    assert result["from"] == "peer"
    assert sorted(result["serving"]) == sorted(zones)
    for zone in zones:
        # b's rebuilt enforcer has a's live keys (a key the rollover retired meanwhile stays behind:
        # restore takes live keys only), and b signs with them
        rebuilt = enforcer_keys(lab, "b", zone)
        assert set(rebuilt.items()) <= set(enforcer_keys(lab, "a", zone).items()), zone
        assert set(rebuilt.values()) == {"KSK", "ZSK"}, zone
        a, b = lab.signed("a", zone), lab.signed("b", zone)
        assert published_tags(lab, "b", zone) == published_tags(lab, "a", zone), zone
        for signed, other in ((a, b), (b, a)):
            checked = cross_validate(signed, dnskey_rrset(other))
            assert checked.validated > 0 and checked.failures == [], zone
    # signatures of the fast policy live three minutes: expiry thresholds of seconds
    proc = ssh_lab.duo(
        config, "--json", "check", "--warn-days", "0.0005", "--crit-days", "0.0002", check=False
    )
    report = json.loads(proc.stdout)
    assert report["ok"], report
