"""The metrics exporter against a real Prometheus (Debian's package) with the shipped alert rules
(issue 17): every metric has samples for the lab's zone, the names pass `promtool check metrics`
on a real scrape, and a signer killed with SIGKILL fires OdsDuoSignerDown within the exporter's
refresh interval plus two scrape and evaluation intervals plus the rule's `for`; `node start`
clears it.

Node b's watcher is stopped (by its pid) before its signer is killed: a watcher may restart dead
daemons, and this test is about the alert path, not about how long a dead signer stays dead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from duo_ods import process
from duo_ods.lab.exporter import INTERVAL, PORT
from tests.integration.conftest import Lab

pytestmark = pytest.mark.integration

ZONE = "example.test"
BASE = "127.0.10.20"  # this module's lab
PROMETHEUS = "127.0.10.30:9090"  # this module's Prometheus server
SCRAPE = 1.0  # seconds: the Prometheus server's scrape and evaluation intervals here
RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "ods-duo-rules.yml"
T = TypeVar("T")

ZONE_METRICS = [  # every metric with a zone label
    "ods_duo_zone_ok", "ods_duo_soa_serial", "ods_duo_serial_spread",
    "ods_duo_signature_validity_remaining_seconds", "ods_duo_signature_expiration_timestamp_seconds",
    "ods_duo_dnskey_set_match", "ods_duo_cross_validation_ok", "ods_duo_key_state_drift",
    "ods_duo_check_problems", "ods_duo_keys_past_lifetime", "ods_duo_watcher_last_event_timestamp_seconds",
    "ods_duo_watcher_zone_file_error",
]  # fmt: skip
OTHER_METRICS = [
    "ods_duo_daemon_up", "ods_duo_backup_bundles", "ods_duo_backup_snapshot_timestamp_seconds",
    "ods_duo_watcher_queue_length", "ods_duo_watcher_stats_timestamp_seconds",
    "ods_duo_node_operation_duration_seconds_count", "ods_duo_exporter_refresh_timestamp_seconds",
    "ods_duo_exporter_refresh_duration_seconds", "ods_duo_exporter_refresh_errors",
]  # fmt: skip


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab(BASE)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body


def api(path: str, **query: str) -> Any:
    url = f"http://{PROMETHEUS}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    data = json.loads(get(url))
    assert data["status"] == "success", data
    return data["data"]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(every)


@pytest.fixture(scope="module")
def prometheus(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus server scraping the lab's exporter with the shipped rules; stopped by pid."""
    folder = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(lab.status["exporter"]["url"]).netloc
    config = folder / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE:g}s\n  evaluation_interval: {SCRAPE:g}s\n"
        f"rule_files:\n  - {RULES}\n"
        f"scrape_configs:\n  - job_name: ods-duo\n    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (folder / "prometheus.log").open("wb")
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address={PROMETHEUS}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for("ready Prometheus", lambda: get(f"http://{PROMETHEUS}/-/ready"), 60)
        yield PROMETHEUS
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_lab_status_gives_the_exporters_url(lab: Lab) -> None:
    status = json.loads(lab.duo("--json", "lab", "status", "--dir", str(lab.dir)).stdout)
    assert status["exporter"]["url"] == f"http://{BASE}:{PORT}/metrics"
    assert status["exporter"]["pid"] is not None
    assert b"ods_duo_zone_ok" in get(status["exporter"]["url"])


def scraped(url: str) -> bytes | None:
    """The exporter's page once it holds a refresh of the zones."""
    text = get(url)
    return text if b"ods_duo_soa_serial" in text else None


def test_a_real_scrape_passes_promtool(lab: Lab) -> None:
    text = wait_for("a refresh", lambda: scraped(lab.status["exporter"]["url"]), 30)
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_metric_has_samples(lab: Lab, prometheus: str) -> None:
    # The same content written again: an event for the watchers (and nothing to re-sign).
    example = Path(lab.status["input_dir"]) / f"{ZONE}.zone"
    if not example.exists():
        example = next(Path(lab.status["input_dir"]).glob(f"{ZONE}*"))
    example.write_text(example.read_text())

    def missing() -> list[str] | None:
        absent = [m for m in ZONE_METRICS if not api("query", query=f'{m}{{zone="{ZONE}"}}')["result"]]
        absent += [m for m in OTHER_METRICS if not api("query", query=m)["result"]]
        return absent or None

    deadline = time.monotonic() + 60
    while (absent := missing()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not absent, f"no samples for {absent}"
    up = api("query", query='ods_duo_daemon_up{daemon="signerd"}')["result"]
    assert {r["metric"]["node"]: r["value"][1] for r in up} == {"a": "1", "b": "1"}
    ok = api("query", query=f'ods_duo_cross_validation_ok{{zone="{ZONE}"}}')["result"]
    assert {r["metric"]["copy"] for r in ok} == {"a", "b", "ns1"} and all(r["value"][1] == "1" for r in ok)
    # nothing fires on the healthy lab
    assert [a for a in api("alerts")["alerts"] if a["state"] == "firing"] == []


def rule_for(alert: str) -> float:
    """The shipped rule's `for`, in seconds."""
    text = RULES.read_text()
    match = re.search(rf"- alert: {alert}\n(?:.*\n)*?\s+for: (\d+)([smh])", text)
    assert match, alert
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def signer_down(state: str) -> bool:
    return any(
        a["labels"].get("alertname") == "OdsDuoSignerDown" and a["labels"].get("node") == "b"
        and a["labels"].get("daemon") == "signerd" and a["state"] == state
        for a in api("alerts")["alerts"]
    )  # fmt: skip


def test_a_killed_signer_fires_the_alert_and_a_start_clears_it(lab: Lab, prometheus: str) -> None:
    assert process.stop(lab.dir / "state" / "watch-b.json") in {"stopped", "killed"}
    [node] = [n for n in lab.status["nodes"] if n["name"] == "b"]
    pid = node["daemons"]["signerd"]
    # refresh + a refresh's own time, two scrape and evaluation intervals, the rule's `for`, and
    # this test's polling
    bound = INTERVAL + 2.0 + 2 * (SCRAPE + SCRAPE) + rule_for("OdsDuoSignerDown") + 2.0
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for("firing OdsDuoSignerDown", lambda: signer_down("firing"), bound + 30)
    took = time.monotonic() - killed
    print(f"OdsDuoSignerDown fired {took:.1f} s after the kill (bound {bound:.1f} s)")
    assert took <= bound, f"fired {took:.1f} s after the kill, bound {bound:.1f} s"
    lab.duo("node", "start", "b")
    started = time.monotonic()
    wait_for("cleared OdsDuoSignerDown", lambda: not signer_down("firing") and not signer_down("pending"), 60)
    cleared = time.monotonic() - started
    print(f"OdsDuoSignerDown cleared {cleared:.1f} s after node start")
    assert cleared <= INTERVAL + 2.0 + 2 * (SCRAPE + SCRAPE) + 2.0, f"cleared after {cleared:.1f} s"
    up = api("query", query='ods_duo_daemon_up{node="b",daemon="signerd"}')["result"]
    assert up[0]["value"][1] == "1"


def test_once_writes_a_textfile(lab: Lab, tmp_path: Path) -> None:
    """`metrics --once --textfile`: one check and refresh, the file for node_exporter, exit 0."""
    target = tmp_path / "ods-duo.prom"
    lab.duo("metrics", "--once", "--textfile", str(target))
    text = target.read_text()
    assert f'ods_duo_zone_ok{{zone="{ZONE}"}} 1.0' in text
    assert 'ods_duo_daemon_up{daemon="signerd",node="a"} 1.0' in text
