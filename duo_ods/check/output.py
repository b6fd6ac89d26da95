"""Reports as a table for people, JSON for tools, and one Nagios/Icinga plugin line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duo_ods.check.model import ZoneReport

NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3


def as_json(reports: Sequence[ZoneReport]) -> dict[str, Any]:
    return {
        "ok": all(r.ok for r in reports),
        "zones": {
            r.zone: {
                "ok": r.ok,
                "problems": [
                    {"severity": p.severity, "source": p.source, "message": p.message} for p in r.problems
                ],
                "serials": r.serials,
                "signatures": r.signatures,
                "min_expiry_days": None if r.min_expiry_days is None else round(r.min_expiry_days, 2),
            }
            for r in reports
        },
    }


def _status(report: ZoneReport) -> str:
    if not report.ok:
        return "CRITICAL"
    return "WARNING" if any(p.severity == "warning" for p in report.problems) else "OK"


def as_table(reports: Sequence[ZoneReport]) -> str:
    lines = [f"{'ZONE':28} {'STATUS':9} {'SERIALS':40} SIGNATURES"]
    for r in reports:
        serials = " ".join(f"{s}={v}" for s, v in r.serials.items())
        sigs = " ".join(f"{s}={v}" for s, v in r.signatures.items())
        lines.append(f"{r.zone:28} {_status(r):9} {serials:40} {sigs}")
        lines += [f"    {p.severity}: [{p.source}] {p.message}" for p in r.problems]
    verdict = (
        "all zones valid in any mix" if all(r.ok for r in reports) else "PROBLEMS: the mix is not proven"
    )
    return "\n".join([*lines, verdict])


def as_nagios(reports: Sequence[ZoneReport]) -> tuple[int, str]:
    """One line with perfdata, and the plugin exit code (0 OK, 1 WARNING, 2 CRITICAL)."""
    critical = sum(p.severity == "critical" for r in reports for p in r.problems)
    warning = sum(p.severity == "warning" for r in reports for p in r.problems)
    expiry = [r.min_expiry_days for r in reports if r.min_expiry_days is not None]
    if critical:
        code, word = NAGIOS_CRITICAL, "CRITICAL"
    elif warning:
        code, word = NAGIOS_WARNING, "WARNING"
    else:
        code, word = NAGIOS_OK, "OK"
    first = next((p for r in reports for p in r.problems if p.severity != "info"), None)
    detail = f"{first.source}: {first.message}" if first else f"{len(reports)} zones valid in any mix"
    perf = f"zones={len(reports)} critical={critical} warning={warning}"
    if expiry:
        perf += f" min_expiry_days={min(expiry):.2f}"
    return code, f"DUO {word} - {detail} | {perf}"
