"""A duo of two system-layout nodes (Debian's paths), each under its own temp root on this machine.

node init shows its plan, acts, and finds nothing to do the second time (same mtimes and
digests); the real daemons start (in a mount namespace: the root is not the machine's, see
SystemNodePaths.namespace), take the policy, a zone and shared keys, sign, and stop by pid.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from duo_ods.dns.tsig import read_tsig_key
from duo_ods.process import proc_start_time
from tests.integration.conftest import lab_processes, run_duo
from tests.support.dnssec import cross_validate, dnskey_rrset, wait_signed

pytestmark = pytest.mark.integration

PORT = 10053
ADDRESSES = {"a": "127.0.2.11", "b": "127.0.2.12"}  # signers bind 127/8 addresses without `ip addr`
ZONE = "sys.test"
CONFIG = """
key_origin = "a"
[nodes.a]
address = "127.0.2.11"
port = {port}
layout = "system"
root = "root-a"
base_dir = "root-a/var/lib/ods-duo"
token_label = "SYS-A"
[nodes.b]
address = "127.0.2.12"
port = {port}
layout = "system"
root = "root-b"
base_dir = "root-b/var/lib/ods-duo"
token_label = "SYS-B"
[backup]
dir = "backup"
[policy]
zone_propagation_delay = "PT1S"
skew_margin = "PT1S"
"""
ZONE_TEXT = """$ORIGIN sys.test.
$TTL 300
@    SOA ns1 hostmaster 1 300 60 3600 300
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.2
"""


@dataclass
class SysDuo:
    dir: Path

    @property
    def config(self) -> str:
        return str(self.dir / "duo.toml")

    def duo(self, *args: str, check: bool = True) -> Any:
        return run_duo("--config", self.config, *args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.duo("--json", *args).stdout)

    def root(self, node: str) -> Path:
        return self.dir / f"root-{node}"

    def pin(self, node: str) -> str:
        return (self.root(node) / "var/lib/ods-duo/secrets/pin").read_text().strip()

    def logs(self) -> str:
        return "\n".join(
            f"== {p}\n{p.read_text(errors='replace')[-3000:]}"
            for p in self.dir.glob("root-*/var/lib/ods-duo/log/*")
        )


@pytest.fixture(scope="module")
def sysduo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SysDuo]:
    d = SysDuo(tmp_path_factory.mktemp("sysnode"))
    (d.dir / "duo.toml").write_text(CONFIG.format(port=PORT))
    yield d
    for node in ADDRESSES:
        d.duo("node", "stop", node, check=False)
    for pid, _ in lab_processes(d.dir):  # never leave daemons behind, even when a test failed midway
        os.kill(pid, 9)


def snapshot(*tops: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every file and folder under tops: mtime (ns), mode, owner, group and content digest."""
    seen = {}
    for top in tops:
        for path in [top, *sorted(top.rglob("*"))]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            seen[str(path)] = (st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid, digest)
    return seen


def test_dry_run_shows_the_plan_and_changes_nothing(sysduo: SysDuo) -> None:
    plan = sysduo.json("node", "init", "a", "--dry-run")
    assert plan["dry_run"] is True
    assert plan["done"] == []
    steps = {(s["action"], s["target"]) for s in plan["plan"]}
    root = sysduo.root("a")
    assert ("create", str(root / "etc/opendnssec/conf.xml")) in steps
    assert ("create", str(root / "var/lib/opendnssec/kasp.db")) in steps
    assert ("create", "SYS-A") in steps
    assert plan["pending"] > 20
    assert not root.exists()
    assert not (sysduo.dir / "secrets").exists()  # not even the transfer key


def test_init_makes_debian_layout_and_second_run_changes_nothing(sysduo: SysDuo) -> None:
    first = sysduo.duo("node", "init", "a")
    assert "step(s) to do" in first.stdout
    assert "nothing to do" not in first.stdout
    sysduo.duo("node", "init", "b")
    root = sysduo.root("a")
    for pin_holder in (first.stdout, first.stderr):
        assert sysduo.pin("a") not in pin_holder
    conf = root / "etc/opendnssec/conf.xml"
    assert f"<PIN>{sysduo.pin('a')}</PIN>" in conf.read_text()
    assert (conf.stat().st_mode & 0o777) == 0o640
    assert (conf.owner(), conf.group()) == ("root", "opendnssec")
    pin_file = root / "var/lib/ods-duo/secrets/pin"
    assert (pin_file.stat().st_mode & 0o777) == 0o600
    assert ((root / "var/lib/softhsm/tokens").stat().st_mode & 0o7777) == 0o2770
    assert (root / "var/lib/opendnssec/unsigned").owner() == "opendnssec"
    assert (root / "run/opendnssec").group() == "opendnssec"
    assert (root / "etc/softhsm/softhsm2.conf").group() == "softhsm"

    before = snapshot(root, sysduo.dir / "secrets")
    again = sysduo.json("node", "init", "a")
    assert again["pending"] == 0
    assert again["done"] == []
    assert {s["action"] for s in again["plan"]} <= {"ok", "note"}
    assert snapshot(root, sysduo.dir / "secrets") == before
    assert "nothing to do" in sysduo.duo("node", "init", "a").stdout


def test_real_daemons_sign_a_zone_with_shared_keys(sysduo: SysDuo) -> None:
    pids = {}
    for node in ADDRESSES:
        pids[node] = sysduo.json("node", "start", node)["pids"]
        sysduo.duo("node", "policy-import", node)
    try:
        for node, started in pids.items():
            # Each daemon sees its own ROOT/run/opendnssec at /run/opendnssec (mount namespace).
            mounts = Path(f"/proc/{started['signerd']}/mountinfo").read_text()
            assert _bind_mounted(mounts, sysduo.root(node) / "run/opendnssec")
            assert (sysduo.root(node) / "run/opendnssec/engine.sock").is_socket()
        sysduo.duo("kek", "init")
        zone_file = sysduo.dir / "sys.test.zone"
        zone_file.write_text(ZONE_TEXT)
        sysduo.duo("zone", "add", ZONE, "--file", str(zone_file))
        sysduo.duo("key", "create", ZONE)
        key = read_tsig_key(sysduo.dir / "secrets/duo-transfer.key")
        signed = {node: wait_signed(address, PORT, ZONE, 2, key) for node, address in ADDRESSES.items()}
    except Exception:
        print(sysduo.logs())
        raise
    assert dnskey_rrset(signed["a"]) == dnskey_rrset(signed["b"])
    for node, other in (("a", "b"), ("b", "a")):
        result = cross_validate(signed[node], dnskey_rrset(signed[other]))
        assert result.failures == []
        assert result.validated > 5
    # The zone and its input live where Debian's ODS keeps them.
    assert (sysduo.root("a") / "var/lib/opendnssec/unsigned" / ZONE).exists()
    assert (sysduo.root("a") / "var/lib/opendnssec/signconf" / f"{ZONE}.xml").exists()
    # Adding the zone rewrote zonelist.xml with the owner and mode init gave it: still nothing to do.
    assert sysduo.json("node", "init", "a", "--dry-run")["pending"] == 0


def _bind_mounted(mountinfo: str, source: Path) -> bool:
    """Whether /run/opendnssec is a bind mount of source. mountinfo's field 4 is the mounted folder
    within its file system (so only a tail of source when /tmp is a file system of its own), field 5
    the mount point; the last mount on a point is the one in effect."""
    roots = [line.split()[3] for line in mountinfo.splitlines() if line.split()[4] == "/run/opendnssec"]
    return (
        bool(roots)
        and roots[-1].endswith(f"{source.parent.parent.name}/run/opendnssec")
        and str(source).endswith(roots[-1])
    )


def test_stop_by_pid(sysduo: SysDuo) -> None:
    pids = {node: sysduo.json("node", "status", node)["daemons"] for node in ADDRESSES}
    assert all(pid is not None for daemons in pids.values() for pid in daemons.values())
    for node in ADDRESSES:
        stopped = sysduo.json("node", "stop", node)["daemons"]
        assert set(stopped.values()) == {"stopped"}
    for daemons in pids.values():
        for pid in daemons.values():
            assert proc_start_time(pid) is None
    assert lab_processes(sysduo.dir) == []
    assert not (sysduo.root("a") / "run/opendnssec/engine.sock").exists()
