"""`ods-duo lab ...`: the embedded duo on this machine."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import click

from duo_ods.cli.context import DEFAULT_LAB_DIR, Ctx, pass_ctx
from duo_ods.cli.text import once, without_prefix
from duo_ods.lab import lab as lab_impl
from duo_ods.lab.net import MAX_NODES, MIN_NODES

_dir_option = click.option(
    "--dir", "lab_dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True,
    help="lab folder",
)  # fmt: skip


@click.group()
def lab() -> None:
    """A complete duo on this one machine (nodes a and b, or a to e with --nodes; backup, example zone)."""


def _describe(status: dict[str, Any]) -> str:
    lines = [f"lab in {status['lab_dir']}", f"  config:    {status['config']}  (use with --config)"]
    lines.append(f"  input dir: {status['input_dir']}")
    for node in status["nodes"]:
        d = node["daemons"]
        state = "running" if all(d.values()) else ("stopped" if not any(d.values()) else "partly running")
        pids = ", ".join(f"{k} {v}" for k, v in d.items() if v)
        lines.append(
            f"  node {node['name']}: {node['address']} port {node['port']}, {state} ({pids or 'no pids'})"
        )
        for z in node["zones"]:
            lines.append(f"      zone {z['name']}: next key change {z['next_change']}")
        if "error" in node:
            prefix = f"node {node['name']}: "
            lines.append(f"      error: {without_prefix(str(node['error']), prefix)}")
    for w in status.get("watchers", []):
        state = f"pid {w['pid']}" if w["pid"] else "stopped"
        lines.append(f"  watcher for node {w['node']}: {state}, input {w['input_dir']}")
    for sec in status["secondaries"]:
        state = f"named pid {sec['pid']}" if sec["pid"] else "stopped"
        primaries = " then ".join(sec["primaries"]) if sec["mode"] == "failover" else sec["primaries"][0]
        lines.append(f"  secondary {sec['name']}: {sec['address']} port {sec['port']}, {state}, "
                     f"AXFR from {primaries} ({sec['mode']})")  # fmt: skip
    return "\n".join(lines)


def _loopback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A bad --base-address is a usage error (exit 2) before anything is built."""
    try:
        base = ipaddress.IPv4Address(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 address") from None
    if not base.is_loopback or not (base + 4).is_loopback:
        raise click.BadParameter(f"{value}: the lab uses loopback addresses only (127.x.x.x)")
    return value


@lab.command("up")
@_dir_option
@click.option(
    "--base-address", default="127.0.0.10", show_default=True, callback=_loopback,
    help="N nodes get .+1 to .+N, secondaries .+N+1 on (one, or N with --split), the parent .+2N+1",
)  # fmt: skip
@click.option(
    "--nodes", default=2, show_default=True, type=click.IntRange(MIN_NODES, MAX_NODES),
    help="how many signer nodes (a, b, c, ...)",
)  # fmt: skip
@click.option(
    "--port", default=53, show_default=True, type=click.IntRange(1, 65535), help="signer listener port"
)
@click.option("--algorithm", default="13", show_default=True, type=click.Choice(["8", "13", "15"]))
@click.option(
    "--split", is_flag=True, help="one secondary per signer (default: one, failover a then b then ...)"
)
@click.option("--parent", is_flag=True, help="also a parent zone test. for the lab's zones (DS pushed there)")
@click.option(
    "--config-only", is_flag=True, help="only write DIR/duo.toml (to edit it, e.g. the policy, before lab up)"
)
@pass_ctx
def lab_up(
    ctx: Ctx,
    lab_dir: Path,
    base_address: str,
    nodes: int,
    port: int,
    algorithm: str,
    split: bool,
    parent: bool,
    config_only: bool,
) -> None:
    """Build and start the lab duo (again: reports what already runs)."""
    opts = lab_impl.LabOptions(
        base_address=base_address,
        port=port,
        algorithm=int(algorithm),
        split=split,
        parent=parent,
        nodes=nodes,
    )
    if config_only:
        path = lab_impl.write_config(lab_dir, opts)
        ctx.emit({"config": str(path)}, f"lab config in {path}: edit it, then run lab up --dir {lab_dir}")
        return
    with ctx.progress("lab up"):
        result = lab_impl.up(lab_dir, opts)
    head = "lab already running" if result["already_running"] else "lab up"
    ds = ["DS for the parent:", *[f"  {line}" for line in result["ds"]]]
    ctx.emit(result, "\n".join([head, *[f"  {a}" for a in result["actions"]], _describe(result), *ds]))


@lab.command("down")
@_dir_option
@pass_ctx
def lab_down(ctx: Ctx, lab_dir: Path) -> None:
    """Stop every process the lab started (by pid)."""
    result = lab_impl.down(lab_dir)
    lines = [f"lab down in {result['lab_dir']}"]
    lines += [
        f"  node {n}: {', '.join(f'{k} {v}' for k, v in d.items())}" for n, d in result["stopped"].items()
    ]
    lines += [f"  secondary {n}: {v}" for n, v in result["secondaries"].items()]
    lines += [f"  {n}: {v}" for n, v in result["watchers"].items()]
    lines += [f"  problem: {once(p)}" for p in result["problems"]]
    ctx.emit(result, "\n".join(lines))


@lab.command("status")
@_dir_option
@pass_ctx
def lab_status(ctx: Ctx, lab_dir: Path) -> None:
    """What the lab runs: nodes, daemons, zones, addresses, config path."""
    result = lab_impl.status(lab_dir)
    ctx.emit(result, _describe(result))
