"""The lab on real OpenDNSSEC daemons and SoftHSM tokens: nodes, zones, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Lab, run_duo

pytestmark = pytest.mark.integration

GOOD_ZONE = """$ORIGIN second.test.
$TTL 300
@ IN SOA ns1 hostmaster 2026112800 3600 600 864000 300
@ IN NS ns1
ns1 IN A 192.0.2.1
"""


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab("127.0.0.40")


def zones_on(lab: Lab, node: str) -> list[str]:
    out = lab.enforcer(node, "zone", "list")
    return sorted(line.split()[0] for line in out.splitlines() if line.endswith(".xml"))


def test_both_enforcers_list_the_example_zone(lab: Lab) -> None:
    for node in ("a", "b"):
        assert zones_on(lab, node) == ["example.test"], lab.logs()


def test_status_json_names_addresses_ports_and_config(lab: Lab) -> None:
    nodes = {n["name"]: n for n in lab.status["nodes"]}
    assert (nodes["a"]["address"], nodes["a"]["port"]) == ("127.0.0.41", 53)
    assert (nodes["b"]["address"], nodes["b"]["port"]) == ("127.0.0.42", 53)
    for node in nodes.values():
        assert node["config"] == lab.config
        assert all(isinstance(pid, int) for pid in node["daemons"].values())
        assert [z["name"] for z in node["zones"]] == ["example.test"]
        assert node["input_dir"] == lab.status["input_dir"]


def test_each_node_has_its_own_token_and_private_run_dir(lab: Lab) -> None:
    for node in ("a", "b"):
        base = Path(lab.node(node)["base_dir"])
        assert (base / "run" / "engine.sock").is_socket()
        assert (base / "etc" / "conf.xml").stat().st_mode & 0o777 == 0o600
        assert (base / "secrets" / "pin").stat().st_mode & 0o777 == 0o600
        pid = lab.node(node)["daemons"]["signerd"]
        # mountinfo fields 4 and 5: the mounted folder and where it is mounted.
        binds = [ln.split()[3:5] for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        assert [str(base / "run"), "/run/opendnssec"] in binds
    # The host's own /run/opendnssec is untouched.
    assert not any(Path("/run/opendnssec").glob("*.sock"))


def test_lab_up_again_reports_running(lab: Lab) -> None:
    result = json.loads(
        run_duo("--json", "lab", "up", "--dir", str(lab.dir), "--base-address", "127.0.0.40").stdout
    )
    assert result["already_running"] is True
    assert [n["daemons"] for n in result["nodes"]] == [n["daemons"] for n in lab.status["nodes"]]


def test_malformed_zone_file_is_refused_and_nothing_changes(lab: Lab, tmp_path: Path) -> None:
    bad = tmp_path / "bad.test"
    bad.write_text(GOOD_ZONE.replace("second.test.", "bad.test.") + "www IN A 300.1.1.1\n")
    proc = lab.duo("zone", "add", "bad.test", "--file", str(bad), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ods-duo: error: {bad}:6: "), proc.stderr
    for node in ("a", "b"):
        assert zones_on(lab, node) == ["example.test"]


def test_zone_add_list_remove_on_both_nodes(lab: Lab, tmp_path: Path) -> None:
    good = tmp_path / "second.test.zone"
    good.write_text(GOOD_ZONE)
    out = json.loads(lab.duo("--json", "zone", "add", "second.test", "--file", str(good)).stdout)
    assert out["added_on"] == ["a", "b"]
    for node in ("a", "b"):
        assert zones_on(lab, node) == ["example.test", "second.test"]
    listed = json.loads(lab.duo("--json", "zone", "list").stdout)["zones"]
    assert [(z["zone"], z["on_all_nodes"]) for z in listed] == [("example.test", True), ("second.test", True)]
    again = lab.duo("zone", "add", "second.test", "--file", str(good), check=False)
    assert again.returncode == 1 and "exists on every node" in again.stderr
    lab.duo("zone", "remove", "second.test")
    for node in ("a", "b"):
        assert zones_on(lab, node) == ["example.test"]


def test_a_node_down_refuses_the_add_and_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    good = tmp_path / "second.test"
    good.write_text(GOOD_ZONE)
    lab.duo("node", "stop", "b")
    try:
        proc = lab.duo("zone", "add", "second.test", "--file", str(good), check=False)
        assert proc.returncode == 1
        assert "node b: enforcer is not running" in proc.stderr
        assert zones_on(lab, "a") == ["example.test"]
    finally:
        lab.duo("node", "start", "b")
    assert zones_on(lab, "b") == ["example.test"]


def test_address_in_use_is_a_clear_error(lab: Lab, tmp_path: Path) -> None:
    # The lab's node a holds 127.0.0.41:53; a second lab there must refuse before starting anything.
    proc = run_duo("lab", "up", "--dir", str(tmp_path / "lab2"), "--base-address", "127.0.0.40", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "ods-duo: error: node a: 127.0.0.41 port 53/udp is not available (in use)"
    assert not any((tmp_path / "lab2").glob("nodes/*/state/*.json"))
