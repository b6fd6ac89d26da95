"""Metric families from fixed check results and state (pure), and their exposition."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from urllib.request import urlopen

import dns.zone
import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

import duo_ods.metrics.exporter
from duo_ods.check.model import ZoneReport
from duo_ods.check.run import check_zone
from duo_ods.check.sources import FileSource
from duo_ods.metrics.exporter import Exporter
from duo_ods.metrics.families import families, past_lifetime
from duo_ods.metrics.observation import Checked, Observation, WatcherView
from duo_ods.metrics.watchfile import WatchStats
from duo_ods.protocol.ops import VerifyResult
from duo_ods.watch.plan import ZoneFileState
from tests.unit.check.signer import NOW, Key, signed

ZONE = "example.test"
DAY = 86400.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(obs: Observation) -> Samples:
    """name and sorted labels -> value, as a scrape shows them."""
    exporter = Exporter()
    exporter.refresh(lambda: obs)
    found: Samples = {}
    for family in text_string_to_metric_families(exporter.text().decode()):
        for s in family.samples:
            found[s.name, tuple(sorted(s.labels.items()))] = s.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found["ods_duo_" + name, tuple(sorted(labels.items()))]


def save(zone: dns.zone.Zone, path: Path) -> FileSource:
    zone.to_file(str(path), relativize=False, want_origin=True)
    return FileSource(path.name, path)


@pytest.fixture(scope="module")
def keys() -> tuple[Key, Key, Key]:
    return Key.make(flags=257), Key.make(), Key.make()


def test_from_a_healthy_check(keys: tuple[Key, Key, Key], tmp_path: Path) -> None:
    zone = signed(ksk=keys[0], zsk=keys[1])
    report = check_zone(ZONE, [save(zone, tmp_path / "a"), save(zone, tmp_path / "ns1")], now=NOW, workers=1)
    assert report.problems == []
    found = samples(Observation(at=NOW, reports=[report]))
    serial = zone.find_rdataset("@", "SOA")[0].serial
    assert value(found, "soa_serial", zone=ZONE, copy="a") == serial
    assert value(found, "soa_serial", zone=ZONE, copy="ns1") == serial
    assert value(found, "serial_spread", zone=ZONE) == 0
    assert value(found, "dnskey_set_match", zone=ZONE) == 1
    assert value(found, "cross_validation_ok", zone=ZONE, copy="a") == 1
    assert value(found, "zone_ok", zone=ZONE) == 1
    soonest = min(rd.expiration for _n, _t, rd in zone.iterate_rdatas() if rd.rdtype == 46)
    assert value(found, "signature_validity_remaining_seconds", zone=ZONE, copy="ns1") == soonest - NOW
    assert value(found, "signature_expiration_timestamp_seconds", zone=ZONE, copy="a") == soonest
    assert value(found, "check_problems", zone=ZONE, severity="critical") == 0


def test_from_copies_with_other_keys(keys: tuple[Key, Key, Key], tmp_path: Path) -> None:
    """b signs with a ZSK a does not publish: the DNSKEY sets differ and neither copy's signatures
    validate under the other's keys."""
    a = save(signed(ksk=keys[0], zsk=keys[1]), tmp_path / "a")
    b = save(signed(ksk=keys[0], zsk=keys[2]), tmp_path / "b")
    report = check_zone(ZONE, [a, b], now=NOW, workers=1)
    found = samples(Observation(at=NOW, reports=[report]))
    assert value(found, "dnskey_set_match", zone=ZONE) == 0
    assert value(found, "cross_validation_ok", zone=ZONE, copy="a") == 0
    assert value(found, "cross_validation_ok", zone=ZONE, copy="b") == 0
    assert value(found, "zone_ok", zone=ZONE) == 0
    assert value(found, "check_problems", zone=ZONE, severity="critical") >= 2


def test_fixed_report() -> None:
    report = ZoneReport(
        ZONE,
        serials={"a": 100, "b": 112, "ns1": 100},
        expirations={"a": int(NOW + 2 * DAY)},
        keysets={"a": "k1", "b": "k1"},
        cross_failures={"a": 0, "b": 3},
        key_state_drift=2,
    )
    report.add("warning", "duo", "SOA serials are 12 apart")
    found = samples(Observation(at=NOW, reports=[report]))
    assert value(found, "serial_spread", zone=ZONE) == 12
    assert value(found, "signature_validity_remaining_seconds", zone=ZONE, copy="a") == 2 * DAY
    assert value(found, "cross_validation_ok", zone=ZONE, copy="b") == 0
    assert value(found, "key_state_drift", zone=ZONE) == 2
    assert value(found, "check_problems", zone=ZONE, severity="warning") == 1
    # not compared (a node's key states unreadable): no sample rather than a false 0
    unknown = samples(Observation(at=NOW, reports=[ZoneReport("other.test")]))
    assert ("ods_duo_key_state_drift", (("zone", "other.test"),)) not in unknown


def key(role: str, inception: float, introducing: int = 1, state: str = "omnipresent") -> dict[str, object]:
    return {
        "role": role,
        "inception": inception,
        "flags": {"introducing": introducing},
        "records": [{"state": state}],
    }


def test_keys_past_lifetime() -> None:
    lifetimes = {"KSK": 365 * DAY, "ZSK": 90 * DAY}
    keys = {
        ZONE: [
            key("KSK", NOW - 100 * DAY),  # within
            key("ZSK", NOW - 91 * DAY),  # past
            key("ZSK", NOW - 200 * DAY, introducing=0, state="hidden"),  # dead: not counted
            key("ZSK", NOW - 200 * DAY, introducing=0, state="omnipresent"),  # retiring: not in use
        ],
        "other.test": [key("KSK", NOW - 10 * DAY)],
    }
    assert past_lifetime(keys, lifetimes, NOW) == {ZONE: 1, "other.test": 0}


def test_nodes_backup_watchers() -> None:
    obs = Observation(
        at=NOW,
        daemons={"a": {"enforcerd": 11, "signerd": None}, "b": {"enforcerd": 12, "signerd": 13}},
        keys={"a": {ZONE: [key("ZSK", NOW - 91 * DAY)]}},
        lifetimes={"ZSK": 90 * DAY},
        bundles=4,
        snapshot_taken=NOW - 3600,
        verify=VerifyResult(at=NOW - 7200, ok=False, problems=3),
        watchers=[
            WatcherView(
                "a",
                {ZONE: ZoneFileState("d", "error", "bad"), "ok.test": ZoneFileState("e", "ok")},
                WatchStats(at=NOW - 5, queue=3, events={ZONE: NOW - 60}),
                {"signerd": 2, "enforcerd": 0},
            ),
            WatcherView("b", {}, None),
        ],
        duration=1.5,
        errors=["backup bundles: no route"],
    )
    found = samples(obs)
    assert value(found, "daemon_up", node="a", daemon="signerd") == 0
    assert value(found, "daemon_up", node="a", daemon="enforcerd") == 1
    assert value(found, "daemon_up", node="b", daemon="signerd") == 1
    assert value(found, "keys_past_lifetime", node="a", zone=ZONE) == 1
    assert value(found, "backup_bundles") == 4
    assert value(found, "backup_snapshot_timestamp_seconds") == NOW - 3600
    assert value(found, "backup_verify_timestamp_seconds") == NOW - 7200
    assert value(found, "backup_verify_ok") == 0
    assert value(found, "watcher_queue_length", node="a") == 3
    assert value(found, "daemon_restarts_total", node="a", daemon="signerd") == 2
    assert value(found, "daemon_restarts_total", node="a", daemon="enforcerd") == 0
    assert value(found, "watcher_last_event_timestamp_seconds", node="a", zone=ZONE) == NOW - 60
    assert value(found, "watcher_zone_file_error", node="a", zone=ZONE) == 1
    assert value(found, "watcher_zone_file_error", node="a", zone="ok.test") == 0
    assert ("ods_duo_watcher_queue_length", (("node", "b"),)) not in found  # it wrote no numbers
    assert value(found, "exporter_refresh_duration_seconds") == 1.5
    assert value(found, "exporter_refresh_errors") == 1


def test_no_backup_store_read_means_no_backup_samples() -> None:
    names = {f.name for f in families(Observation(at=NOW))}
    assert "ods_duo_backup_bundles" not in names and "ods_duo_daemon_up" in names


def test_a_scrape_shows_the_last_refresh_only() -> None:
    exporter = Exporter()
    exporter.refresh(lambda: Observation(at=NOW, bundles=1))
    exporter.refresh(lambda: Observation(at=NOW + 60, bundles=2))
    text = exporter.text().decode()
    assert "ods_duo_backup_bundles 2.0" in text and "ods_duo_backup_bundles 1.0" not in text


def test_node_operation_times() -> None:
    exporter = Exporter()
    exporter.op_times.observe("a", "status", 0.03, True)
    exporter.op_times.observe("a", "status", 3.0, False)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(exporter.text().decode())
        for s in f.samples
    }
    ok = (("operation", "status"), ("outcome", "ok"), ("target", "a"))
    assert found["ods_duo_node_operation_duration_seconds_count", ok] == 1
    assert found["ods_duo_node_operation_duration_seconds_bucket", (("le", "0.05"), *ok)] == 1
    assert found["ods_duo_node_operation_duration_seconds_bucket", (("le", "0.025"), *ok)] == 0
    failed = (("operation", "status"), ("outcome", "error"), ("target", "a"))
    assert found["ods_duo_node_operation_duration_seconds_sum", failed] == 3.0


def test_textfile(tmp_path: Path) -> None:
    exporter = Exporter()
    exporter.refresh(lambda: Observation(at=NOW, bundles=7))
    exporter.write_textfile(tmp_path / "ods-duo.prom")
    assert "ods_duo_backup_bundles 7.0" in (tmp_path / "ods-duo.prom").read_text()


def fetch(url: str) -> bytes:
    with urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body


def test_run_checks_on_its_own_interval_and_serves_over_http() -> None:
    checks: list[float] = []

    def check() -> Checked:
        checks.append(time.monotonic())
        return Checked(at=NOW, reports=[ZoneReport(ZONE, serials={"a": len(checks)})])

    exporter = Exporter()
    server = exporter.serve("127.0.10.41", 0)
    port = server.server_address[1]
    runner = threading.Thread(
        target=exporter.run,
        args=(lambda c: Observation(at=NOW, reports=c.reports if c else []), check, 0.05, 60.0),
    )
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while b"ods_duo_soa_serial{" not in (page := fetch(f"http://127.0.10.41:{port}/metrics")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # several refreshes, still one check (its interval is 60 s)
        assert len(checks) == 1
        assert b'ods_duo_soa_serial{copy="a",zone="example.test"} 1.0' in page
    finally:
        exporter.stop()
        runner.join(timeout=5)
        server.shutdown()
        server.server_close()
    assert not runner.is_alive()


def test_a_check_that_takes_long_runs_at_most_a_tenth_of_the_time() -> None:
    """Interval 0.05 s, a check of 0.1 s: the next comes 1 s after the last started, not at once."""
    checks: list[float] = []

    def check() -> Checked:
        checks.append(time.monotonic())
        time.sleep(0.1)
        return Checked(at=NOW)

    exporter = Exporter()
    runner = threading.Thread(target=exporter.run, args=(lambda c: Observation(at=NOW), check, 0.05, 0.05))
    runner.start()
    try:
        time.sleep(0.7)
        assert len(checks) == 1  # back to back, there would be six by now
        deadline = time.monotonic() + 5
        while len(checks) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        exporter.stop()
        runner.join(timeout=5)
    assert 1.0 <= checks[1] - checks[0] < 2.0


def test_dashboard_and_rules_use_only_exported_names() -> None:
    """Every ods_duo_ name in the rules and the dashboard is one the exporter makes."""
    exporter = Exporter()
    exporter.op_times.observe("a", "status", 0.1, True)
    obs = Observation(
        at=NOW,
        reports=[
            ZoneReport(
                ZONE,
                serials={"a": 1},
                expirations={"a": 1},
                keysets={"a": "k"},
                cross_failures={"a": 0},
                key_state_drift=0,
            )
        ],
        daemons={"a": {"signerd": 1}},
        keys={"a": {ZONE: []}},
        bundles=1,
        snapshot_taken=1.0,
        verify=VerifyResult(at=1.0, ok=True, problems=0),
        checked_at=1.0,
        check_duration=1.0,
        watchers=[WatcherView("a", {ZONE: ZoneFileState("d", "ok")}, WatchStats(1.0, 0, {ZONE: 1.0}))],
    )
    exporter.refresh(lambda: obs)
    made = {s.name for f in text_string_to_metric_families(exporter.text().decode()) for s in f.samples}
    contrib = Path(__file__).resolve().parents[3] / "contrib" / "prometheus"
    for name in ("ods-duo-rules.yml", "grafana-dashboard.json"):
        used = set(re.findall(r"ods_duo_\w+", (contrib / name).read_text()))
        assert used and used <= made, (name, used - made)


def test_the_checks_part_is_rendered_once_per_check(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    real = duo_ods.metrics.exporter.render

    def counting(found: list[Metric]) -> bytes:
        rendered.append(len(found))
        return real(found)

    monkeypatch.setattr(duo_ods.metrics.exporter, "render", counting)
    report = ZoneReport(ZONE, serials={"a": 1}, expirations={"a": int(NOW + DAY)})
    checked = Checked(at=NOW, reports=[report])
    exporter = Exporter()
    for up in (1, None, 1):
        exporter.refresh(
            lambda up=up: Observation(at=NOW + 30, reports=checked.reports, checked_at=checked.at,
                                      daemons={"a": {"signerd": up}})
        )  # fmt: skip
    assert len(rendered) == 4  # the check's part once, the refresh's part three times
    text = exporter.text().decode()
    # as of the check, not of the refresh
    assert 'ods_duo_signature_validity_remaining_seconds{copy="a",zone="example.test"} 86400.0' in text
    assert 'ods_duo_daemon_up{daemon="signerd",node="a"} 1.0' in text
