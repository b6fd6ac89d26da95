"""Metric families from one refresh's observation (pure; unit tested from fixed check results).

Names and units follow Prometheus conventions: base units (seconds, not days), `_timestamp_seconds`
for points in time, 1/0 gauges for yes/no. Labels: `zone`, `copy` (a signer node or a secondary,
as `check` names them), `node`, `daemon`.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from duo_ods.check.model import ZoneReport
from duo_ods.metrics.observation import KeyViews, Observation
from duo_ods.ods.kaspdb import is_dead

PREFIX = "ods_duo_"


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


def zone_families(reports: list[ZoneReport], now: float) -> list[Metric]:
    ok = _gauge("zone_ok", "1 when check finds no critical problem in the zone", ["zone"])
    serial = _gauge("soa_serial", "SOA serial of the zone's copy", ["zone", "copy"])
    spread = _gauge("serial_spread", "Highest minus lowest SOA serial over the zone's copies", ["zone"])
    validity = _gauge(
        "signature_validity_remaining_seconds",
        "Seconds until the copy's first RRSIG expires (its shortest validity left)", ["zone", "copy"],
    )  # fmt: skip
    expiry = _gauge(
        "signature_expiration_timestamp_seconds", "When the copy's first RRSIG expires", ["zone", "copy"]
    )
    dnskey = _gauge("dnskey_set_match", "1 when every copy of the zone serves the same DNSKEY set", ["zone"])
    cross = _gauge(
        "cross_validation_ok",
        "1 when every signature of the copy validates under every other copy's keys", ["zone", "copy"],
    )  # fmt: skip
    drift = _gauge("key_state_drift", "Keys whose enforcer states differ between the nodes", ["zone"])
    problems = _gauge("check_problems", "Problems check finds in the zone, by severity", ["zone", "severity"])
    for r in reports:
        ok.add_metric([r.zone], 1 if r.ok else 0)
        for copy, value in r.serials.items():
            serial.add_metric([r.zone, copy], value)
        if r.serials:
            spread.add_metric([r.zone], max(r.serials.values()) - min(r.serials.values()))
        for copy, at in r.expirations.items():
            validity.add_metric([r.zone, copy], at - now)
            expiry.add_metric([r.zone, copy], at)
        if r.keysets:
            dnskey.add_metric([r.zone], 1 if len(set(r.keysets.values())) == 1 else 0)
        for copy, failed in r.cross_failures.items():
            cross.add_metric([r.zone, copy], 1 if failed == 0 else 0)
        if r.key_state_drift is not None:
            drift.add_metric([r.zone], r.key_state_drift)
        for severity in ("critical", "warning", "info"):
            problems.add_metric([r.zone, severity], sum(p.severity == severity for p in r.problems))
    return [ok, serial, spread, validity, expiry, dnskey, cross, drift, problems]


def past_lifetime(keys: KeyViews, lifetimes: dict[str, float], now: float) -> dict[str, int]:
    """Zone -> its keys in use (introducing, not dead) older than their role's policy lifetime."""
    found: dict[str, int] = {}
    for zone, states in keys.items():
        found[zone] = sum(
            1 for k in states
            if k["flags"].get("introducing") and not is_dead(k)
            and k["role"] in lifetimes and now - float(k["inception"]) > lifetimes[k["role"]]
        )  # fmt: skip
    return found


def node_families(obs: Observation) -> list[Metric]:
    up = _gauge("daemon_up", "1 when the node's daemon runs (by its pid record)", ["node", "daemon"])
    for node, daemons in sorted(obs.daemons.items()):
        for daemon, pid in sorted(daemons.items()):
            up.add_metric([node, daemon], 0 if pid is None else 1)
    lifetime = _gauge(
        "keys_past_lifetime", "Keys in use older than the policy's lifetime for their role", ["zone", "node"]
    )
    for node, keys in sorted(obs.keys.items()):
        for zone, count in sorted(past_lifetime(keys, obs.lifetimes, obs.at).items()):
            lifetime.add_metric([zone, node], count)
    return [up, lifetime]


def backup_families(obs: Observation) -> list[Metric]:
    found: list[Metric] = []
    if obs.bundles is not None:
        bundles = _gauge("backup_bundles", "Key bundles in the backup store", [])
        bundles.add_metric([], obs.bundles)
        found.append(bundles)
    if obs.snapshot_taken is not None:
        taken = _gauge("backup_snapshot_timestamp_seconds", "When the backup store's snapshot was taken", [])
        taken.add_metric([], obs.snapshot_taken)
        found.append(taken)
    if obs.verify is not None:
        verified = _gauge("backup_verify_timestamp_seconds", "When `backup verify` last ran", [])
        verified.add_metric([], obs.verify.at)
        passed = _gauge("backup_verify_ok", "1 when the last `backup verify` found no problem", [])
        passed.add_metric([], 1 if obs.verify.ok else 0)
        found += [verified, passed]
    return found


def watcher_families(obs: Observation) -> list[Metric]:
    queue = _gauge("watcher_queue_length", "Zone file events the watcher has not handled yet", ["node"])
    seen = _gauge(
        "watcher_stats_timestamp_seconds", "When the watcher last wrote its numbers (at least every 10 s)",
        ["node"],
    )  # fmt: skip
    event = _gauge(
        "watcher_last_event_timestamp_seconds", "When the watcher last handled an event on the zone's file",
        ["node", "zone"],
    )  # fmt: skip
    error = _gauge(
        "watcher_zone_file_error", "1 when the watcher's last attempt on the zone's file failed",
        ["node", "zone"],
    )  # fmt: skip
    restarts = CounterMetricFamily(
        PREFIX + "daemon_restarts",
        "Times the node's watcher started a daemon that had died",
        labels=["node", "daemon"],
    )
    for w in obs.watchers:
        for daemon, count in sorted(w.restarts.items()):
            restarts.add_metric([w.node, daemon], count)
        for zone, state in sorted(w.files.items()):
            error.add_metric([w.node, zone], 1 if state.status == "error" else 0)
        if w.stats is None:
            continue
        queue.add_metric([w.node], w.stats.queue)
        seen.add_metric([w.node], w.stats.at)
        for zone, at in sorted(w.stats.events.items()):
            event.add_metric([w.node, zone], at)
    return [queue, seen, event, error, restarts]


def exporter_families(obs: Observation) -> list[Metric]:
    at = _gauge("exporter_refresh_timestamp_seconds", "When the exporter last refreshed", [])
    at.add_metric([], obs.at)
    took = _gauge("exporter_refresh_duration_seconds", "How long the exporter's last refresh took", [])
    took.add_metric([], obs.duration)
    errors = _gauge("exporter_refresh_errors", "Sources the exporter's last refresh could not read", [])
    errors.add_metric([], len(obs.errors))
    return [at, took, errors]


def check_families(obs: Observation) -> list[Metric]:
    found: list[Metric] = []
    if obs.checked_at is not None:
        checked = _gauge(
            "exporter_check_timestamp_seconds", "When the check behind the zone metrics started", []
        )
        checked.add_metric([], obs.checked_at)
        found.append(checked)
    if obs.check_duration is not None:
        check_took = _gauge("exporter_check_duration_seconds", "How long the exporter's last check took", [])
        check_took.add_metric([], obs.check_duration)
        found.append(check_took)
    return found


def checked_families(obs: Observation) -> list[Metric]:
    """What comes from the last check (the zones, the key states, the backup store): it changes only
    with a new check, so the exporter renders it once per check. Times left are as of the check."""
    _up, lifetime = node_families(obs)
    now = obs.at if obs.checked_at is None else obs.checked_at
    return [*zone_families(obs.reports, now), lifetime, *backup_families(obs), *check_families(obs)]


def refresh_families(obs: Observation) -> list[Metric]:
    """What every refresh reads anew: the daemons, the watchers, the exporter itself."""
    up, _lifetime = node_families(obs)
    return [up, *watcher_families(obs), *exporter_families(obs)]


def families(obs: Observation) -> list[Metric]:
    return [*checked_families(obs), *refresh_families(obs)]
