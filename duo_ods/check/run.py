"""Run the checks for zones of a duo (live) or for given sources (offline)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from duo_ods.bind.tsig import TsigKey, read_tsig_key
from duo_ods.check.checks import (
    Context,
    Nsec3Params,
    check_ds,
    check_expiry,
    check_nsec3,
    check_signatures,
    compare_sources,
)
from duo_ods.check.model import Source, Thresholds, ZoneReport
from duo_ods.check.sources import fetch_axfr, load_file, parse_source
from duo_ods.check.verify import Verifier
from duo_ods.check.zoneview import ZoneView, analyse
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.listing import ds_for_zone, list_keys
from duo_ods.transport.base import Transport
from duo_ods.zones.check import normalize_zone_name


def check_zone(  # noqa: PLR0917 (all but the first two have defaults)
    zone: str,
    sources: Sequence[Source],
    ds_records: Sequence[str] = (),
    limits: Thresholds | None = None,
    now: float | None = None,
    verifier: Verifier | None = None,
) -> ZoneReport:
    """All checks on the copies of one zone; a missing copy is a problem, the rest still runs."""
    ctx = Context(verifier or Verifier(), time.time() if now is None else now, limits or Thresholds())
    report = ZoneReport(zone)
    views: dict[str, ZoneView] = {}
    params: dict[str, Nsec3Params | None] = {}
    for source in sources:
        if source.zone is None:
            report.add("critical", source.name, source.error or "no data")
            continue
        view = analyse(source.zone)
        views[source.name] = view
        report.serials[source.name] = view.serial
        check_signatures(view, source.name, ctx, report)
        params[source.name] = check_nsec3(view, source.name, report)
        check_ds(view, source.name, ds_records, ctx, report)
        check_expiry(view, source.name, ctx, report)
    if len(views) > 1:
        compare_sources(views, params, ctx, report)
    return report


def live_sources(duo: Duo, zone: str) -> list[Source]:
    """The zone from every signer's listener, then from every configured secondary (TSIG)."""
    tsig = read_tsig_key(duo.tsig_key_path) if duo.tsig_key_path.exists() else None
    sources = [fetch_axfr(name, n.address, n.port, zone, tsig) for name, n in duo.nodes.items()]
    sources += [fetch_axfr(s.name, s.address, s.port, zone, tsig) for s in duo.config.secondaries]
    return sources


def check_duo(duo: Duo, transport: Transport, zones: Sequence[str], limits: Thresholds) -> list[ZoneReport]:
    """Check zones (default: every zone on any node) on every signer and secondary."""
    if not zones:
        found: set[str] = set()
        for node in duo.nodes:
            try:
                found |= {z["name"] for z in transport.call(node, "zone-list")["zones"]}
            except DuoError:
                continue  # reported per zone below through its missing copy
        zones = sorted(found)
    reports = []
    verifier = Verifier()
    for zone in (normalize_zone_name(z) for z in zones):
        ds_records: list[str] = []
        drift: list[str] = []
        try:
            ds_records = ds_for_zone(duo, transport, zone).ds
            drift = [
                f"{r['role']} {r['keytag']}: " + ", ".join(f"{n} {v['state']}" for n, v in r["nodes"].items())
                + (f", missing on {', '.join(r['missing_on'])}" if r["missing_on"] else "")
                for r in list_keys(duo, transport, zone)
                if r["differs"]
            ]  # fmt: skip
        except DuoError as exc:
            enforcer_error = str(exc)
        else:
            enforcer_error = ""
        report = check_zone(zone, live_sources(duo, zone), ds_records, limits, verifier=verifier)
        if enforcer_error:
            report.add("critical", "duo", f"cannot read the enforcers' keys: {enforcer_error}")
        if drift:
            report.add("warning", "duo", "enforcer key states differ between the nodes: " + "; ".join(drift))
        reports.append(report)
    return reports


def check_given(
    zone: str,
    specs: Sequence[str],
    ds_records: Sequence[str],
    limits: Thresholds,
    tsig: TsigKey | None = None,
) -> ZoneReport:
    """Offline (or ad hoc) check of saved files and/or servers given with --source."""
    zone = normalize_zone_name(zone)
    sources = []
    file_names = [t.name for t in map(parse_source, specs) if isinstance(t, Path)]
    for spec in specs:
        target = parse_source(spec)
        if isinstance(target, tuple):
            sources.append(fetch_axfr(spec, target[0], target[1], zone, tsig))
        else:
            # Short names read better; fall back to the path when two files share a name.
            unique = file_names.count(target.name) == 1
            sources.append(load_file(target, zone, target.name if unique else str(target)))
    return check_zone(zone, sources, ds_records, limits)
