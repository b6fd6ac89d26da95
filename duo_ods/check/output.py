"""Reports as a table for people, JSON for tools, and one Nagios/Icinga plugin line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from duo_ods.check.model import Problem, ZoneReport

NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3
HEADINGS = ("ZONE", "STATUS", "SERIALS", "SIGNATURES")


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
                "cross_validated": [
                    _pair(r, signer, keys, failed) for (signer, keys), failed in r.cross_pairs.items()
                ],
            }
            for r in reports
        },
    }


def _pair(report: ZoneReport, signer: str, keys: str, failed: int) -> dict[str, Any]:
    """One ordered pair of copies: the first's signatures under the second's keys."""
    return {
        "signatures_of": signer,
        "keys_of": keys,
        "signatures": report.signatures.get(signer),
        "failed": failed,
    }


def _status(report: ZoneReport) -> str:
    if not report.ok:
        return "CRITICAL"
    return "WARNING" if any(p.severity == "warning" for p in report.problems) else "OK"


def as_table(reports: Sequence[ZoneReport]) -> str:
    """Columns as wide as their widest cell: four copies (split mode) stay aligned like two."""
    rows = [
        (
            r.zone,
            _status(r),
            " ".join(f"{s}={v}" for s, v in r.serials.items()) or "-",
            " ".join(f"{s}={v}" for s, v in r.signatures.items()) or "-",
        )
        for r in reports
    ]
    widths = [max([len(head), *(len(row[i]) for row in rows)]) for i, head in enumerate(HEADINGS[:3])]

    def line(cells: Sequence[str]) -> str:
        return " ".join(f"{c:{w}}" for c, w in zip(cells[:3], widths, strict=True)) + f" {cells[3]}"

    lines = [line(HEADINGS)]
    for r, row in zip(reports, rows, strict=True):
        lines.append(line(row))
        # [b] already names the node: "(node b: enforcer is not running)" reads "(enforcer is not running)"
        lines += [
            f"    {p.severity}: [{p.source}] {p.message.replace(f'node {p.source}: ', '')}"
            for p in r.problems
        ]
    verdict = (
        "all zones valid in any mix" if all(r.ok for r in reports) else "PROBLEMS: the mix is not proven"
    )
    return "\n".join([*lines, verdict])


NO_COPY = "no AXFR of "  # how check words a copy it could not fetch


def no_copy_from(report: ZoneReport, nodes: set[str]) -> bool:
    return any(p.source in nodes and p.message.startswith(NO_COPY) for p in report.problems)


def explain_unkeyed(reports: Sequence[ZoneReport], unkeyed: set[str]) -> list[ZoneReport]:
    """ODS signs and serves a zone only once it has keys: for such a zone every transfer fails (the
    signer answers unsigned, the secondaries NOTAUTH), and the transfer key is not to blame. Those
    copies' problems become one that says what is next."""
    out = []
    for r in reports:
        if r.zone not in unkeyed:
            out.append(r)
            continue
        kept = [p for p in r.problems if not p.message.startswith(NO_COPY)]
        why = Problem(
            "critical", "duo",
            f"zone {r.zone} has no keys yet, so no signer signs or serves it; "
            f"next: ods-duo key create {r.zone}",
        )  # fmt: skip
        out.append(replace(r, problems=[why, *kept]))
    return out


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
