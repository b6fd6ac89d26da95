"""The ssh transport against real OpenSSH servers, one per lab node, with the forced command (issue 8).

One lab on 127.0.1.10 (nodes a and b on .11 and .12); next to each node's ODS
listener an sshd of its own on port 2211, with its own host key, whose
authorized_keys lets the test's client key run only `ods-duo node serve-ssh`
for that node. The controller-side configs are copies of the lab's config with
the nodes' transport switched to ssh; the nodes serve with the lab's original
(local) config. Addresses .21 to .23 stand in for a hung peer, an absent one and
one that goes away in the middle of a key flow.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Lab
from tests.support.dnssec import dnskey_rrset
from tests.support.ssh_lab import CONNECT_TIMEOUT, SSH_PORT, SshLab, keygen, kill_leftovers, sshd_in_front

pytestmark = pytest.mark.integration

BASE = "127.0.1.10"
NODES = {"a": "127.0.1.11", "b": "127.0.1.12"}
SILENT = "127.0.1.21"  # takes TCP connections and never says a word
NOBODY = "127.0.1.22"  # nothing listens
ZONE = """$ORIGIN {zone}.
$TTL 300
@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300
@ IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.80
"""
SLACK = 4.0  # python start-up of the ods-duo process around the call


@dataclass
class FaultyLab(SshLab):
    """The ssh lab plus keys that lead to a hanging or a dying forced command."""

    hang_key: Path = Path()
    dying_key: Path = Path()
    sleeper: Path = Path()


@pytest.fixture(scope="module")
def ssh_lab(make_lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyLab]:
    lab: Lab = make_lab(BASE)
    base = tmp_path_factory.mktemp("ssh")
    hang = base / "hang_key"
    hang_pub = keygen(hang)
    dying = base / "dying_key"
    dying_pub = keygen(dying)
    sleeper = base / "sleep-forever.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    silent = socket.socket()  # a peer that hangs: the kernel completes the handshake, nobody speaks
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind((SILENT, SSH_PORT))
    silent.listen(8)

    def extra(node: str, forced: str) -> list[str]:
        return [
            f'command="{sys.executable} {sleeper}",restrict {hang_pub}',
            'environment="ODS_DUO_FAULT=op:key-unwrap-batch:before",'
            f'command="{forced}",restrict {dying_pub}',
        ]

    try:
        with sshd_in_front(lab, base, NODES, extra_keys=extra) as ssh:
            yield FaultyLab(
                **{f.name: getattr(ssh, f.name) for f in fields(ssh)},
                hang_key=hang,
                dying_key=dying,
                sleeper=sleeper,
            )
    finally:
        silent.close()
        kill_leftovers(sleeper)


def hsm_locators(lab: Lab, node: str) -> set[str]:
    """What the node's HSM holds, asked through the local transport (independent of ssh)."""
    proc = lab.duo("node", "op", "hsm-list", "--node", node)
    return {k["locator"] for k in json.loads(proc.stdout)["result"]["keys"]}


def bundles(lab: Lab) -> set[str]:
    return {p.stem for p in (lab.dir / "backup" / "bundles").glob("*.json")}


def enforcer_locators(lab: Lab, node: str, zone: str) -> set[str]:
    out = lab.enforcer(node, "key", "list", "-v", "-a")
    return {line.split()[-3] for line in out.splitlines() if line.startswith(zone + " ")}


def snapshot(lab: Lab) -> dict[str, set[str]]:
    return {"a": hsm_locators(lab, "a"), "b": hsm_locators(lab, "b"), "backup": bundles(lab)}


def add_zone(lab: Lab, name: str, folder: Path) -> None:
    path = folder / name
    path.write_text(ZONE.format(zone=name))
    lab.duo("zone", "add", name, "--file", str(path))


def test_key_create_over_ssh_matches_the_local_transport(ssh_lab: FaultyLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    config = ssh_lab.config("duo-ssh")
    accepted = {n: s.accepted() for n, s in ssh_lab.sshd.items()}
    before = snapshot(lab)
    zone_file = tmp_path / "viassh.test"
    zone_file.write_text(ZONE.format(zone="viassh.test"))
    ssh_lab.duo(config, "zone", "add", "viassh.test", "--file", str(zone_file))
    created = json.loads(ssh_lab.duo(config, "--json", "key", "create", "viassh.test").stdout)["keys"]

    # it went over ssh: one connection per node per command (zone add, key create), each a session
    # with the node's agent behind the forced command
    for node, server in ssh_lab.sshd.items():
        assert server.accepted() == accepted[node] + 2, ssh_lab.logs()
        assert "forced-command (key-option)" in server.log()
    assert sorted(k["role"] for k in created) == ["KSK", "ZSK"]
    locators = {k["locator"] for k in created}
    for key in created:
        assert key["origin"] == "a" and key["imported_on"] == ["a", "b"]

    # the same outcome as the lab's example.test, whose keys the local transport made
    after = snapshot(lab)
    for holder in ("a", "b", "backup"):
        assert after[holder] - before[holder] == locators, holder
    for zone, keys in (("viassh.test", locators), ("example.test", None)):
        za, zb = lab.signed("a", zone), lab.signed("b", zone)
        assert dnskey_rrset(za) == dnskey_rrset(zb), zone
        if keys is not None:
            assert {k.flags for k in dnskey_rrset(za)} == {256, 257}
            assert all(enforcer_locators(lab, n, zone) == keys for n in NODES)

    # key list and backup list say the same through either transport
    over_ssh = json.loads(ssh_lab.duo(config, "--json", "key", "list").stdout)
    local = json.loads(lab.duo("--json", "key", "list").stdout)
    assert over_ssh == local and over_ssh["ok"] is True
    rows = {r["zone"]: r for r in over_ssh["keys"]}
    assert set(rows) >= {"viassh.test", "example.test"}
    for row in over_ssh["keys"]:
        if row["zone"] in ("viassh.test", "example.test"):
            assert set(row["nodes"]) == {"a", "b"} and not row["differs"]
    backup_rows = json.loads(ssh_lab.duo(config, "--json", "backup", "list").stdout)["bundles"]
    for zone in ("viassh.test", "example.test"):
        mine = [r for r in backup_rows if r["zone"] == zone]
        assert sorted(r["role"] for r in mine) == ["KSK", "ZSK"]
        assert all(r["in_hsm"] == ["a", "b"] and len(r["in_enforcer"]) == 2 for r in mine)


def test_unreachable_peer_is_a_clear_error_and_changes_nothing(ssh_lab: FaultyLab, tmp_path: Path) -> None:
    lab = ssh_lab.lab
    add_zone(lab, "unreached.test", tmp_path)
    config = ssh_lab.config("duo-nobody", b={"host": NOBODY})
    before = snapshot(lab)
    start = time.monotonic()
    proc = ssh_lab.duo(config, "key", "create", "unreached.test", check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert proc.stderr == (
        f"ods-duo: error: step preflight on b: node b: key-states: cannot reach it (ssh {NOBODY} port "
        f"{SSH_PORT}): ssh: connect to host {NOBODY} port {SSH_PORT}: Connection refused\n"
    )
    assert elapsed < CONNECT_TIMEOUT + SLACK
    assert snapshot(lab) == before


def test_peer_gone_in_the_middle_of_key_create_is_undone(ssh_lab: FaultyLab, tmp_path: Path) -> None:
    """b answers the preflight, then its agent dies (SIGKILL) as the key is copied to it: the
    connection ends mid-flow. b's key entry runs the agent with ODS_DUO_FAULT set (duo_ods/faults.py)."""
    lab = ssh_lab.lab
    add_zone(lab, "midway.test", tmp_path)
    config = ssh_lab.config("duo-dying", b={"identity_file": str(ssh_lab.dying_key)})
    before = snapshot(lab)
    proc = ssh_lab.duo(config, "key", "create", "midway.test", "--origin", "a", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ods-duo: error: step copy on b: node b: key-unwrap"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    # the key that a made was deleted again (over ssh); nothing reached b, the backup or an enforcer
    assert snapshot(lab) == before
    for node in NODES:
        assert enforcer_locators(lab, node, "midway.test") == set()


def test_hung_peer_fails_within_the_connect_timeout(ssh_lab: FaultyLab) -> None:
    config = ssh_lab.config("duo-silent", b={"host": SILENT})
    start = time.monotonic()
    proc = ssh_lab.duo(config, "node", "status", "b", check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert proc.stderr == (
        f"ods-duo: error: node b: status: cannot reach it (ssh {SILENT} port {SSH_PORT}): "
        "Connection timed out during banner exchange\n"
    )
    assert CONNECT_TIMEOUT - 0.5 < elapsed < CONNECT_TIMEOUT + SLACK


def test_operation_that_never_answers_fails_within_the_op_timeout(ssh_lab: FaultyLab) -> None:
    """The connection is up, but the node's command hangs (a forced command that sleeps)."""
    op_timeout = 4
    config = ssh_lab.config("duo-hang", b={"identity_file": str(ssh_lab.hang_key), "op_timeout": op_timeout})
    start = time.monotonic()
    proc = ssh_lab.duo(config, "node", "status", "b", check=False)
    elapsed = time.monotonic() - start
    kill_leftovers(ssh_lab.sleeper)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"ods-duo: error: node b: status did not answer within {op_timeout} s "
        f"(ssh {NODES['b']} port {SSH_PORT})\n"
    )
    assert op_timeout - 0.5 < elapsed < op_timeout + SLACK


def test_host_key_mismatch_and_unknown_key_are_refused(ssh_lab: FaultyLab) -> None:
    wrong = ssh_lab.dir / "known_hosts.wrong"  # b's address with a's host key
    wrong.write_text(f"[{NODES['b']}]:{SSH_PORT} {ssh_lab.sshd['a'].host_key_line}\n")
    stranger = ssh_lab.dir / "stranger_key"
    if not stranger.exists():
        keygen(stranger)
    for name, change, reason in (
        ("duo-wrong-host", {"known_hosts_file": str(wrong)}, "Host key verification failed."),
        (
            "duo-stranger",
            {"identity_file": str(stranger)},
            f"root@{NODES['b']}: Permission denied (publickey).",
        ),
    ):
        proc = ssh_lab.duo(ssh_lab.config(name, b=change), "node", "status", "b", check=False)
        assert proc.returncode == 1
        assert proc.stderr == (
            f"ods-duo: error: node b: status: cannot reach it (ssh {NODES['b']} port {SSH_PORT}): {reason}\n"
        )


def ssh_direct(ssh_lab: FaultyLab, node: str, command: str) -> subprocess.CompletedProcess[str]:
    """The real ssh client with the controller's key, asking for an arbitrary command."""
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={ssh_lab.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-i", str(ssh_lab.client_key),
         "-o", "LogLevel=ERROR", "-p", str(SSH_PORT), "-l", "root", "--", NODES[node], command],
        capture_output=True, text=True, timeout=30, input="{}", check=False,
    )  # fmt: skip


def test_forced_command_runs_only_node_operations(ssh_lab: FaultyLab) -> None:
    lab = ssh_lab.lab
    ok = ssh_direct(ssh_lab, "b", f"ods-duo --config {lab.config} node op zone-list --node b")
    assert ok.returncode == 0, ok.stderr
    assert "example.test" in [z["name"] for z in json.loads(ok.stdout)["result"]["zones"]]
    for command, reason in (
        ("id", "is not `ods-duo --config PATH node op OPERATION --node NODE` or"),
        (f"ods-duo --config {lab.config} lab down --dir /", "is not `ods-duo"),
        ("ods-duo --config /tmp/other.toml node op zone-list --node b", "this key may only use"),
        (f"ods-duo --config {lab.config} node op kek-import-raw --node b", "unknown operation"),
        (f"ods-duo --config {lab.config} node op zone-list --node a", "only reach node b, not 'a'"),
        (f"ods-duo --config {lab.config} node op status --node backup", "lives with the controller"),
    ):
        proc = ssh_direct(ssh_lab, "b", command)
        assert proc.returncode == 1 and proc.stdout == ""
        (line,) = proc.stderr.splitlines()
        assert line.startswith("ods-duo serve-ssh: refused: ") and reason in line, line
    # node a's key goes through the shipped wrapper script: the same rules
    proc = ssh_direct(ssh_lab, "a", f"ods-duo --config {lab.config} node op zone-list --node b")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "ods-duo serve-ssh: refused: this key may only reach node a, not 'b'\n"
