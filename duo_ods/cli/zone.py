"""`ods-duo zone ...`: zones on every node of the duo."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from duo_ods.bind import managed
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.zones.manage import add_zone, list_zones, remove_zone, update_zone


@click.group()
def zone() -> None:
    """Add, remove and list zones on both signers."""


def _sync_managed_secondaries(ctx: Ctx) -> None:
    """The secondaries ods-duo runs itself (the lab's) follow the list of signed zones at once."""
    managed.sync_signed(ctx.duo, ctx.transport)


@zone.command("add")
@click.argument("zone_name", metavar="ZONE")
@click.option("--file", "file", required=True, type=click.Path(path_type=Path), help="unsigned zone file")
@pass_ctx
def zone_add(ctx: Ctx, zone_name: str, file: Path) -> None:
    """Check FILE, then add ZONE to every node (all or none)."""
    result = add_zone(ctx.duo, ctx.transport, zone_name, file)
    _sync_managed_secondaries(ctx)
    text = f"zone {result.zone}: serial {result.serial}, {result.records} records"
    text += f", added on {', '.join(result.added_on)}"
    if result.already_on:
        text += f" (was already on {', '.join(result.already_on)})"
    if result.stripped:
        text += f"; {result.stripped} DNSSEC records stripped from the input"
    ctx.emit(asdict(result), text)


@zone.command("update")
@click.argument("zone_name", metavar="ZONE")
@click.option("--file", "file", required=True, type=click.Path(path_type=Path), help="unsigned zone file")
@pass_ctx
def zone_update(ctx: Ctx, zone_name: str, file: Path) -> None:
    """Check FILE, then give every node the new data for ZONE; each re-signs it."""
    result = update_zone(ctx.duo, ctx.transport, zone_name, file)
    lines = [f"zone {result['zone']}: input serial {result['serial']}, {result['records']} records"]
    for node, r in result["nodes"].items():
        state = f"error: {r['error']}" if "error" in r else ("signed" if r["signing"] else r["note"])
        served = result["served"].get(node)
        lines.append(
            f"  node {node}: {state}; serves serial {served if served is not None else '(no answer)'}"
        )
    for sec, outcome in result.get("notified", {}).items():
        lines.append(f"  secondary {sec}: {outcome}")
    ctx.emit(result, "\n".join(lines))


@zone.command("remove")
@click.argument("zone_name", metavar="ZONE")
@pass_ctx
def zone_remove(ctx: Ctx, zone_name: str) -> None:
    """Remove ZONE from every node."""
    result = remove_zone(ctx.duo, ctx.transport, zone_name)
    _sync_managed_secondaries(ctx)
    ctx.emit({"zone": zone_name, "removed": result}, f"zone {zone_name} removed from {', '.join(result)}")


@zone.command("list")
@pass_ctx
def zone_list(ctx: Ctx) -> None:
    """Every zone and the nodes that have it."""
    rows = list_zones(ctx.duo, ctx.transport)
    lines = [f"{'ZONE':30} {'NODES':12} NEXT CHANGE"]
    for row in rows:
        nodes = ",".join(sorted(row["nodes"])) or "-"
        flag = "" if row["on_all_nodes"] else "  (not on every node)"
        nxt = "; ".join(f"{n}: {v['next_change']}" for n, v in sorted(row["nodes"].items()))
        lines.append(f"{row['zone']:30} {nodes:12} {nxt}{flag}")
        for n, v in sorted(row["nodes"].items()):
            if v.get("input") and v["input"]["status"] != "ok":
                lines.append(f"    input on {n}: {v['input']['status']}: {v['input']['message']}")
        for n, message in sorted(row.get("refused", {}).items()):
            lines.append(f"    refused on {n}: {message}")
    ctx.emit({"zones": rows}, "\n".join(lines))
