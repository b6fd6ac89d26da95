"""The one key lock on a real duo (issue 12): two `key create` runs for one zone started at the same
moment, and the key origin's watcher making keys for a new zone while the CLI runs `key create` for
it, each give the zone exactly one key pair, the same on both enforcers and in the backup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from duo_ods.process import python_module
from tests.integration.conftest import Lab
from tests.support.crash import ZONE_TEXT, consistency, op

pytestmark = pytest.mark.integration

# Both runs exec `ods-duo` at this many seconds from now: Python's start-up is not in the race.
START_DELAY = 3.0
# Sleeps until the start instant, then becomes `python -m duo_ods ARGS...`.
_AT = "import os, sys, time; time.sleep(max(0.0, float(sys.argv[1]) - time.time())); " \
      "os.execv(sys.executable, [sys.executable, '-P', '-m', 'duo_ods', *sys.argv[2:]])"  # fmt: skip


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab("127.0.1.50")


def started_at(at: float, config: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ODS_DUO_FAULT"}
    return subprocess.Popen(
        [sys.executable, "-c", _AT, repr(at), "--config", config, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def zone_keys(config: str, node: str, zone: str) -> list[dict[str, Any]]:
    return [k for z in op(config, node, "key-states")["zones"] if z["zone"] == zone for k in z["keys"]]


def one_pair_everywhere(config: str, zone: str) -> list[str]:
    """What breaks "exactly one KSK and one ZSK, the same on both enforcers, each with its bundle"."""
    problems = []
    keys = {n: zone_keys(config, n, zone) for n in ("a", "b")}
    for node, found in keys.items():
        roles = sorted(k["role"] for k in found)
        if roles != ["KSK", "ZSK"]:
            problems.append(f"node {node} has keys {roles} for {zone}, not one KSK and one ZSK")
    locators = {n: sorted(k["locator"] for k in found) for n, found in keys.items()}
    if locators["a"] != locators["b"]:
        problems.append(f"the enforcers use different keys for {zone}: {locators}")
    bundles = sorted(
        b["locator"] for b in op(config, "backup", "bundle-list")["bundles"] if b["zone"] == zone
    )
    if bundles != locators["a"]:
        problems.append(f"the backup holds bundles {bundles} for {zone}, the enforcers use {locators['a']}")
    return problems


def add_zone(lab: Lab, tmp: Path, zone: str) -> None:
    path = tmp / zone
    path.write_text(ZONE_TEXT.format(zone=zone))
    lab.duo("zone", "add", zone, "--file", str(path))


def test_two_key_creates_at_the_same_moment_give_one_key_pair(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    zone = "twice.test"
    add_zone(lab, tmp_path_factory.mktemp("lock"), zone)
    at = time.time() + START_DELAY
    runs = [started_at(at, lab.config, "key", "create", zone) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    codes = sorted(code for code, _out, _err in results)
    assert codes == [0, 1], results
    _code, _out, refused = next(r for r in results if r[0] == 1)
    # the refusal is one clear line: the zone has its keys now, a rollover replaces one
    assert f"zone {zone} has keys already on node a" in refused, refused
    assert "key rollover" in refused and "Traceback" not in refused, refused
    assert one_pair_everywhere(lab.config, zone) == []
    assert consistency(lab.config, ["a", "b"]) == []


def test_the_watcher_and_the_cli_making_keys_for_a_new_zone_give_one_key_pair(lab: Lab) -> None:
    """A zone file dropped into the input directory: both watchers add the zone, the key origin's
    (a's) makes its keys as soon as both nodes have it. The CLI runs `key create` for it at that very
    moment (polling until the zone is on both nodes, then at once), and again until one of the two
    made the keys. Exactly one key pair results; a refused `key create` says why."""
    zone = "raced.test"
    input_dir = Path(lab.status["input_dir"])
    tmp = input_dir / f".{zone}.swp"
    tmp.write_text(ZONE_TEXT.format(zone=zone))
    os.replace(tmp, input_dir / zone)  # one complete file, as an editor writes it
    deadline = time.monotonic() + 90
    while not all(zone in {z["name"] for z in op(lab.config, n, "zone-list")["zones"]} for n in ("a", "b")):
        assert time.monotonic() < deadline, "the watchers did not add the zone"
        time.sleep(0.05)
    outcomes = []
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [*python_module("duo_ods"), "--config", lab.config, "--json", "key", "create", zone],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        outcomes.append((proc.returncode, proc.stderr.strip()))
        if proc.returncode == 0:
            made = json.loads(proc.stdout)["keys"]
            assert sorted(k["role"] for k in made) == ["KSK", "ZSK"]
            break
        if "has keys already" in proc.stderr:
            break  # the watcher made them first
        # before the watcher's keys: nothing else may stop it
        assert "is not on node" in proc.stderr or "waiting" in proc.stderr, proc.stderr
    else:
        pytest.fail(f"neither the watcher nor the CLI made keys: {outcomes}")
    # the watcher's own run (if it lost) refuses under the lock and then sees the keys: give it time
    time.sleep(5)
    assert one_pair_everywhere(lab.config, zone) == [], outcomes
    assert consistency(lab.config, ["a", "b"]) == []
    log = "".join(p.read_text() for p in sorted(lab.dir.glob("log/watch-a*.log")))
    assert "Traceback" not in log
    print(f"key create runs of the CLI (exit, stderr): {outcomes}")  # who won, for the report (-s)
