"""A node's daemon that dies is started again by the node's watcher (duo_ods.node.supervise), on
real daemons: ods-signerd killed (SIGKILL, by its pid) runs again within RESTART_WITHIN, serves
the zone and `check` is OK again; a node stopped with `node stop` stays stopped."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from duo_ods import process
from duo_ods.errors import CommandError
from duo_ods.node.supervise import restart_counts
from duo_ods.ods.client import Signer
from duo_ods.watch.service import SUPERVISE_INTERVAL
from tests.integration.conftest import Lab

pytestmark = pytest.mark.integration

ZONE = "example.test"
RESTART_WITHIN = 15.0  # seconds from the kill to a signer that answers (the watcher looks every 2 s)


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab(os.environ.get("ODS_DUO_SUPERVISE_ADDRESS", "127.0.9.30"))


def state_dir(lab: Lab, node: str) -> Path:
    return Path(lab.node(node)["base_dir"]) / "state"


def signer_pid(lab: Lab, node: str) -> int | None:
    record = process.running(state_dir(lab, node) / "signerd.json")
    return record.pid if record is not None else None


def answers(lab: Lab, node: str) -> bool:
    try:
        Signer(Path(lab.node(node)["base_dir"]) / "run" / "engine.sock", timeout=5)("running")
    except CommandError:
        return False
    return True


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - start


def watcher_log(lab: Lab, node: str) -> str:
    return "".join(Path(w["log"]).read_text() for w in lab.status["watchers"] if w["node"] == node)


def check_ok(lab: Lab) -> bool:
    return lab.duo("--json", "check", check=False).returncode == 0


def test_a_killed_signer_runs_again_serves_and_check_is_ok(lab: Lab) -> None:
    lab.signed("a", ZONE)
    old = signer_pid(lab, "a")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    took = wait_for(
        "a new ods-signerd on node a that answers",
        lambda: signer_pid(lab, "a") not in (None, old) and answers(lab, "a"),
        RESTART_WITHIN,
    )
    print(f"signer of node a running again {took:.1f} s after kill -9")
    # counted once the supervisor's start returned (it waits for the daemon; the test may see it first)
    counted = lambda: restart_counts(state_dir(lab, "a"))["signerd"] == 1  # noqa: E731
    wait_for("the restart counted", counted, RESTART_WITHIN)
    assert restart_counts(state_dir(lab, "a")) == {"signerd": 1, "enforcerd": 0}
    assert restart_counts(state_dir(lab, "b")) == {"signerd": 0, "enforcerd": 0}
    said = watcher_log(lab, "a")
    assert f"node a: ods-signerd (pid {old}) died" in said and "started again, pid" in said, said
    lab.signed("a", ZONE)  # served again (AXFR, signed, both keys)
    wait_for("check OK", lambda: check_ok(lab), 60)


def test_a_node_stopped_on_purpose_stays_stopped_until_started(lab: Lab) -> None:
    lab.duo("node", "stop", "a")
    time.sleep(4 * SUPERVISE_INTERVAL)  # the watcher looked a few times meanwhile
    assert signer_pid(lab, "a") is None
    assert restart_counts(state_dir(lab, "a"))["signerd"] == 1  # from the test above, no more
    report = lab.duo("--json", "check", check=False)
    assert report.returncode != 0
    assert "ods-signerd is not running on node a" in report.stdout, report.stdout
    lab.duo("node", "start", "a")
    assert signer_pid(lab, "a") is not None
    wait_for("check OK", lambda: check_ok(lab), 60)
    # and the node is looked after again: a kill after the start is seen to
    old = signer_pid(lab, "a")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for("the signer again", lambda: signer_pid(lab, "a") not in (None, old), RESTART_WITHIN)
    status = json.loads(lab.duo("--json", "node", "status", "a").stdout)
    assert status["daemons"]["signerd"] == signer_pid(lab, "a"), status
