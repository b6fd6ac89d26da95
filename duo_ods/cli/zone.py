"""`ods-duo zone ...`: zones on every node of the duo."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from duo_ods.backup.snapshot import snapshot_after
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.cli.text import human, without_prefix
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import NodeError
from duo_ods.keys.reuse import Reuse, returning_zone_keys
from duo_ods.lab import secondaries
from duo_ods.zones.catchup import catch_up
from duo_ods.zones.level import level_zone
from duo_ods.zones.manage import (
    ZoneAddResult,
    add_zone,
    add_zones,
    list_zones,
    missed_summary,
    node_zones,
    remove_zone,
    update_zone,
)


@click.group()
def zone() -> None:
    """Add, remove and list zones on every signer."""


def _sync_managed_secondaries(ctx: Ctx) -> None:
    """The secondaries ods-duo runs itself (the lab's) follow the list of signed zones at once;
    production secondaries get `ods-duo bind-config` instead."""
    if ctx.duo.secondary_dirs:
        secondaries.sync_signed(ctx.duo, ctx.client)


@zone.command("add")
@click.argument("args", metavar="FILE... | ZONE --file FILE", nargs=-1, required=True)
@click.option("--file", "file", type=click.Path(path_type=Path), help="unsigned zone file (one ZONE)")
@click.option(
    "--new-keys", is_flag=True,
    help="a zone back after removal gets new keys (a new DS), not its keys from before removal",
)  # fmt: skip
@pass_ctx
def zone_add(ctx: Ctx, args: tuple[str, ...], file: Path | None, new_keys: bool) -> None:
    """Check each zone file, then add its zone to every node (all nodes or none).

    FILE...: the zone is named by the file (ZONE or ZONE.zone); many files go to the nodes in
    batches, and a bad one is reported by name while the others are added (exit 1 if any failed).
    ZONE --file FILE: one zone from a file of any name.

    A zone removed with keys gets them back (same DS) when it returns within the backup's
    retention; outside it, or with --new-keys, it gets new keys and a new DS (said in one line).
    """
    if file is not None:
        if len(args) != 1:
            raise click.UsageError("with --file, name exactly one ZONE")
        result = add_zone(ctx.duo, ctx.client, args[0], file)
        keys = _returning(ctx, [result], new_keys=new_keys)
        _sync_managed_secondaries(ctx)
        lines = [_added_text(result), *(k.message for k in keys.values()), *_next_step([result], keys)]
        text = "\n".join(lines)
        ctx.emit({**asdict(result), "keys": keys[result.zone].to_json() if keys else None}, text)
        return
    with ctx.progress("zone add", total=len(args) if len(args) > 1 else None):
        outcomes = add_zones(ctx.duo, ctx.client, [Path(a) for a in args])
        added = [o.result for o in outcomes if o.result is not None]
        keys = _returning(ctx, added, new_keys=new_keys)
        if added:
            _sync_managed_secondaries(ctx)
    lines = [_added_text(r) for r in added]
    lines += [k.message for k in keys.values()]
    lines += _next_step(added, keys)
    failed = [o for o in outcomes if o.result is None]
    ctx.emit(
        {
            "zones": [
                {"file": o.file, "zone": o.zone, "error": o.error,
                 **({"result": asdict(o.result)} if o.result is not None else {}),
                 **({"keys": keys[o.zone].to_json()} if o.zone in keys else {})}
                for o in outcomes
            ],
            "failed": [o.file for o in failed],
        },
        "\n".join(lines),
    )  # fmt: skip
    if failed:
        for o in failed:
            click.echo(f"ods-duo: {without_prefix(str(o.error), o.file + ': ')}", err=True)
        click.echo(f"ods-duo: {len(failed)} of {len(outcomes)} file(s) not added", err=True)
        raise SystemExit(1)


def _returning(ctx: Ctx, added: list[ZoneAddResult], *, new_keys: bool) -> dict[str, Reuse]:
    """Zones back after removal get their old keys (same DS) or, said in one line, new ones."""
    keys = {
        r.zone: reuse
        for r in added
        if (reuse := returning_zone_keys(ctx.duo, ctx.client, r.zone, new_keys=new_keys)) is not None
    }
    if keys:
        warning = snapshot_after(ctx.duo, ctx.client, "zone add")
        if warning:
            click.echo(f"ods-duo: warning: {warning}", err=True)
    return keys


def _next_step(added: list[ZoneAddResult], keys: dict[str, Reuse]) -> list[str]:
    """A zone added without keys is not signed yet, so no server gives it out: say what comes next."""
    bare = [r.zone for r in added if r.zone not in keys and r.added_on]
    if not bare:
        return []
    if len(bare) == 1:
        zone = bare[0]
        return [f"zone {zone} has no keys yet: not signed nor served; next: ods-duo key create {zone}"]
    more = " ..." if len(bare) > 3 else ""
    return [
        f"{len(bare)} zones have no keys yet: not signed nor served; next: "
        f"ods-duo key create {' '.join(bare[:3])}{more} (or --all-without-keys)"
    ]


def _added_text(result: ZoneAddResult) -> str:
    text = f"zone {result.zone}: serial {result.serial}, {result.records} records"
    text += f", added on {', '.join(result.added_on)}"
    if result.already_on:
        text += f" (was already on {', '.join(result.already_on)})"
    if result.stripped:
        text += f"; {result.stripped} DNSSEC records stripped from the input"
    return text


@zone.command("update")
@click.argument("zone_name", metavar="ZONE")
@click.option("--file", "file", required=True, type=click.Path(path_type=Path), help="unsigned zone file")
@pass_ctx
def zone_update(ctx: Ctx, zone_name: str, file: Path) -> None:
    """Check FILE, record it as ZONE's newest input, then give it to every node; each re-signs it.

    Exits 1 when a node did not take it now (down, hung, unreachable): that node is caught up
    when it returns (`node start`, the key origin's watcher, or `zone catch-up`).
    """
    result = update_zone(ctx.duo, ctx.client, zone_name, file)
    lines = [f"zone {result['zone']}: input serial {result['serial']}, {result['records']} records"]
    for node, r in result["nodes"].items():
        state = {
            "missed": f"missed: {r.get('error')}",
            "signed": "signed",
            "stored": f"stored: {r.get('note')}",
        }
        served = result["served"].get(node)
        shown = served if served is not None else "(no answer)"
        lines.append(f"  node {node}: {state[r['status']]}; serves serial {shown}")
    for sec, outcome in result.get("notified", {}).items():
        lines.append(f"  secondary {sec}: {outcome}")
    ctx.emit(result, "\n".join(lines))
    summary = missed_summary(result)
    if summary:
        click.echo(f"ods-duo: {summary}", err=True)
        raise SystemExit(1)


@zone.command("remove")
@click.argument("zone_name", metavar="ZONE")
@click.option(
    "--delete-file", is_flag=True,
    help="first delete the zone's file (ZONE, ZONE.zone) from every input directory this machine reaches",
)  # fmt: skip
@pass_ctx
def zone_remove(ctx: Ctx, zone_name: str, delete_file: bool) -> None:
    """Remove ZONE from every node (refused while its file is still in a watched input directory)."""
    result = remove_zone(ctx.duo, ctx.client, zone_name, delete_file)
    _sync_managed_secondaries(ctx)
    ctx.emit({"zone": zone_name, "removed": result}, f"zone {zone_name} removed from {', '.join(result)}")


@zone.command("catch-up")
@click.argument("node_names", metavar="[NODE]...", nargs=-1)
@click.option("--dry-run", is_flag=True, help="show the plan only")
@pass_ctx
def zone_catch_up(ctx: Ctx, node_names: tuple[str, ...], dry_run: bool) -> None:
    """Give every node (or NODE) each zone's newest input that it missed, signed above any stale serial."""
    report = catch_up(ctx.duo, ctx.client, list(node_names) or None, dry_run)
    lines = [s.describe() for s in report.steps] or ["every node has every zone's newest input"]
    for where, done in report.done.items():
        lines.append(f"  done {where}: " + ", ".join(f"{k} {v}" for k, v in done.items() if k != "notified"))
    lines += [f"  FAILED {where}: {why}" for where, why in report.failed.items()]
    ctx.emit({**report.to_json(), "dry_run": dry_run}, "\n".join(lines))
    if not report.ok:
        raise SystemExit(1)


@zone.command("level")
@click.argument("zone_names", metavar="[ZONE]...", nargs=-1)
@click.option("--max-spread", type=click.IntRange(min=0), help="default: [serials] max_spread")
@pass_ctx
def zone_level(ctx: Ctx, zone_names: tuple[str, ...], max_spread: int | None) -> None:
    """Bring every node whose SOA serial lags the leading node's too far up to it (default: every zone)."""
    known = {z for zones in node_zones(ctx.duo, ctx.client).values() for z in zones}
    names = [normalize_zone_name(z) for z in zone_names] or sorted(known)
    unknown = [z for z in names if z not in known]
    if unknown:
        raise NodeError(f"zone {', '.join(unknown)}: on no node (zone list shows the zones)")
    results = [level_zone(ctx.duo, ctx.client, z, max_spread) for z in names]
    lines = []
    for r in results:
        served = " ".join(f"{n}={human(s)}" for n, s in r["served"].items())
        did = f"levelled {', '.join(r['levelled'])} to {r['target']}" if r["levelled"] else "within bound"
        failed = "".join(f"; {n} failed: {e}" for n, e in r["failed"].items())
        lines.append(f"{r['zone']}: {served}: {did}{failed}")
    ctx.emit({"zones": results}, "\n".join(lines))
    if any(r["failed"] for r in results):
        raise SystemExit(1)


@zone.command("list")
@pass_ctx
def zone_list(ctx: Ctx) -> None:
    """Every zone and the nodes that have it."""
    rows, down = list_zones(ctx.duo, ctx.client)
    lines = [f"{'ZONE':30} {'NODES':12} NEXT CHANGE"]
    for row in rows:
        nodes = ",".join(sorted(row["nodes"])) or "-"
        flag = "" if row["on_all_nodes"] else "  (not on every node)"
        if down and not row["on_all_nodes"]:
            flag = f"  ({', '.join(sorted(down))} down: unknown there)"
        nxt = "; ".join(f"{n}: {v['next_change']}" for n, v in sorted(row["nodes"].items()))
        lines.append(f"{row['zone']:30} {nodes:12} {nxt}{flag}")
        for n, v in sorted(row["nodes"].items()):
            if v.get("input") and v["input"]["status"] != "ok":
                lines.append(f"    input on {n}: {v['input']['status']}: {v['input']['message']}")
        for n, message in sorted(row.get("refused", {}).items()):
            lines.append(f"    refused on {n}: {message}")
    for n, why in sorted(down.items()):
        lines.append(f"node {n}: DOWN or unreachable: {without_prefix(why, f'node {n}: ')}")
    ctx.emit({"zones": rows, "down": down}, "\n".join(lines))
