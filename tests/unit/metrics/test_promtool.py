"""The shipped alert rules: valid (`promtool check rules`) and each alert's unit test passes
(`promtool test rules`); the exporter's names pass `promtool check metrics`. promtool comes
with Debian's prometheus package (scripts/setup.sh)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from duo_ods.check.model import ZoneReport
from duo_ods.metrics.exporter import Exporter
from duo_ods.metrics.observation import Observation, WatcherView
from duo_ods.metrics.watchfile import WatchStats
from duo_ods.watch.plan import ZoneFileState

CONTRIB = Path(__file__).resolve().parents[3] / "contrib" / "prometheus"
RULES = CONTRIB / "ods-duo-rules.yml"
TESTS = CONTRIB / "ods-duo-rules.test.yml"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=CONTRIB,
        check=False,
        timeout=120,
    )


def test_rules_are_valid() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_every_alert_has_a_passing_unit_test() -> None:
    alerts = set(re.findall(r"^ *- alert: (\w+)$", RULES.read_text(), re.MULTILINE))
    # alerts some test expects to fire (exp_alerts not empty)
    tested = set(re.findall(r"alertname: (\w+)\n *exp_alerts:\n *- exp_labels", TESTS.read_text()))
    assert len(alerts) >= 6
    assert alerts == tested
    proc = promtool("test", "rules", str(TESTS))
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_a_broken_expectation_fails() -> None:
    """The unit tests can fail: the signer-down test with the alert expected a minute early."""
    first = TESTS.read_text().split("\n  - interval:")[:2]  # the header and the first test
    broken = "\n  - interval:".join(first).replace(
        "      - eval_time: 2m\n        alertname: OdsDuoSignerDown",
        "      - eval_time: 1m\n        alertname: OdsDuoSignerDown",
        1,
    )
    path = CONTRIB / ".broken.test.yml"
    try:
        path.write_text(broken)
        proc = promtool("test", "rules", path.name)
    finally:
        path.unlink()
    assert proc.returncode != 0 and "OdsDuoSignerDown" in proc.stdout + proc.stderr


def test_metric_names_pass_promtool() -> None:
    report = ZoneReport(
        "example.test",
        serials={"a": 1, "b": 1},
        expirations={"a": 100},
        keysets={"a": "k"},
        cross_failures={"a": 0},
        key_state_drift=0,
    )
    obs = Observation(
        at=50.0,
        reports=[report],
        daemons={"a": {"signerd": 1}},
        keys={"a": {}},
        bundles=1,
        snapshot_taken=1.0,
        watchers=[
            WatcherView(
                "a", {"example.test": ZoneFileState("d", "ok")}, WatchStats(1.0, 0, {"example.test": 1.0})
            )
        ],
    )
    exporter = Exporter()
    exporter.refresh(lambda: obs)
    exporter.op_times.observe("a", "status", 0.1, True)
    proc = promtool("check", "metrics", stdin=exporter.text().decode())
    assert proc.returncode == 0, proc.stdout + proc.stderr
