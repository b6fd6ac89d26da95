"""CLI output on a real lab (split mode: four copies), as a new user meets it (issue 17).

One lab for the module. The unit tests (tests/unit/cli/test_output.py, test_progress.py) cover each
item without daemons; these asserts prove them against the real nodes, BIND and a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from duo_ods.process import python_module
from tests.integration.conftest import Lab

BASE = "127.0.13.100"  # helper E's range: 127.0.13.1 - 127.0.13.254
ZONE = "example.test"
CLEAR = "\r\x1b[K"


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab(BASE, "--split")


def zone_file(folder: Path, zone: str, address: str = "192.0.2.1") -> Path:
    path = folder / zone
    path.write_text(
        f"$TTL 300\n@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n"
        f"@ NS ns1.{zone}.\nns1 A {address}\n"
    )
    return path


def on_a_terminal(lab: Lab, *args: str) -> tuple[int, str, str]:
    """(exit code, what the terminal got on stderr, stdout) of the real command, stderr on a pty."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*python_module("duo_ods"), "--config", lab.config, *args],
        stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace"), out


def test_json_after_the_command(lab: Lab) -> None:
    status = json.loads(lab.duo("lab", "status", "--dir", str(lab.dir), "--json").stdout)
    assert {n["name"] for n in status["nodes"]} == {"a", "b"}
    report = json.loads(lab.duo("check", "--json").stdout)
    assert report["ok"] is True and set(report["zones"][ZONE]["serials"]) == {"a", "b", "ns1", "ns2"}
    # the catalog (default): no zone listed, the options fragment per secondary
    bind = json.loads(lab.duo("bind-config", "--json").stdout)
    assert bind["catalog"] is True and bind["zones"] == [] and set(bind["options"]) == {"ns1", "ns2"}
    assert "catalog-zones" in bind["options"]["ns1"] and f'zone "{ZONE}"' not in bind["secondaries"]["ns1"]
    bind = json.loads(lab.duo("bind-config", "--zones", "--json").stdout)
    assert set(bind["secondaries"]) == {"ns1", "ns2"} and ZONE in bind["zones"]
    assert f'zone "{ZONE}"' in bind["secondaries"]["ns1"]


def test_text_a_person_reads(lab: Lab) -> None:
    table = lab.duo("check").stdout.splitlines()
    start = table[0].index("SIGNATURES")
    assert table[1][start:].startswith("a=") and table[1][start - 1] == " ", table  # aligned, 4 copies
    node = lab.duo("node", "status", "b").stdout
    assert "None" not in node and "{" not in node and "[" not in node and "True" not in node, node
    assert f"zones: {ZONE}" in node
    keys = [line.split() for line in lab.duo("key", "list", ZONE).stdout.splitlines()[1:]]
    assert [k[1] for k in keys] == ["KSK", "ZSK"], keys
    status = lab.duo("lab", "status", "--dir", str(lab.dir)).stdout
    assert f"zone {ZONE}: next key change " in status


def test_unknown_zones_and_bad_records_are_errors_that_say_why(lab: Lab, tmp_path: Path) -> None:
    for args in (("zone", "level", "nosuch.test"), ("key", "ds", "nosuch.test")):
        proc = lab.duo(*args, check=False)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
            "ods-duo: error: zone nosuch.test: on no node (zone list shows the zones)"
        ], proc
    bad = zone_file(tmp_path, "bad.test", "192.0.2.300")
    proc = lab.duo("zone", "add", str(bad), check=False)
    assert proc.returncode == 1
    assert f"ods-duo: {bad}:4: cannot parse this A record: '192.0.2.300' is not an IPv4 address." in (
        proc.stderr.splitlines()
    ), proc.stderr
    usage = lab.duo("check", ZONE, "--source", f"{BASE}:70000", check=False)
    assert usage.returncode == 2 and "port 70000 is not in 1-65535" in usage.stderr


def test_a_zone_without_keys_names_key_create_and_adding_it_again_names_zone_update(
    lab: Lab, tmp_path: Path
) -> None:
    path = zone_file(tmp_path, "bare.test")
    added = lab.duo("zone", "add", "bare.test", "--file", str(path)).stdout
    assert (
        "zone bare.test has no keys yet: not signed nor served; next: ods-duo key create bare.test" in added
    )
    proc = lab.duo("check", "bare.test", "--json", check=False)
    problems = json.loads(proc.stdout)["zones"]["bare.test"]["problems"]
    assert proc.returncode == 1 and problems[0]["source"] == "duo", problems
    assert (
        "no keys yet" in problems[0]["message"] and "ods-duo key create bare.test" in problems[0]["message"]
    )
    assert not any("transfer key" in p["message"] or "NOTAUTH" in p["message"] for p in problems), problems
    again = lab.duo("zone", "add", "bare.test", "--file", str(path), check=False)
    assert again.returncode == 1 and "ods-duo zone update bare.test --file FILE" in again.stderr
    lab.duo("zone", "remove", "bare.test")


def test_progress_on_a_terminal_and_backup_list_and_prune_agree(lab: Lab, tmp_path: Path) -> None:
    files = [str(zone_file(tmp_path, f"gone{i}.test")) for i in range(3)]
    code, terminal, out = on_a_terminal(lab, "zone", "add", *files)
    assert code == 0, terminal
    assert "zone add [" in terminal and "3/3" in terminal and terminal.endswith(CLEAR), terminal
    assert CLEAR not in out and out.count("added on a, b") == 3, out
    code, terminal, out = on_a_terminal(lab, "check", "--json", "gone0.test", "gone1.test")
    assert code == 1 and terminal == "", terminal  # no keys yet: not ok, and nothing drawn
    assert set(json.loads(out)["zones"]) == {"gone0.test", "gone1.test"}
    code, terminal, out = on_a_terminal(lab, "check", "gone0.test", "gone1.test", "gone2.test")
    assert code == 1 and "check [" in terminal and "3/3" in terminal, (terminal, out)
    assert out.count("no keys yet") == 3, out
    code, terminal, out = on_a_terminal(lab, "key", "create", "gone0.test", "gone1.test")
    assert code == 0 and "key create [" in terminal and "2/2" in terminal, terminal
    for zone in ("gone0.test", "gone1.test", "gone2.test"):
        lab.duo("zone", "remove", zone)  # the keys of two of them are dead on every node now
    plan = json.loads(lab.duo("backup", "prune", "--dry-run", "--json").stdout)
    rows = json.loads(lab.duo("backup", "list", "--json").stdout)["bundles"]
    listed_dead = {r["locator"] for r in rows if r["dead"]}
    assert listed_dead == set(plan["dead"]) and len(listed_dead) == 4, (rows, plan)
    assert {r["zone"] for r in rows if r["dead"]} == {"gone0.test", "gone1.test"}
    text = lab.duo("backup", "prune", "--dry-run").stdout
    assert text.count("dead since ") == 4 and "gone0.test KSK" in text and "gone1.test ZSK" in text, text
