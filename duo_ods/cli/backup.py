"""`ods-duo backup ...`: the backup store of key bundles."""

from __future__ import annotations

import sys
import time

import click

from duo_ods.backup.report import backup_list, backup_verify, bundles
from duo_ods.backup.restore import SOURCES, restore_node
from duo_ods.backup.retention import prune
from duo_ods.backup.snapshot import take_snapshot
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.cli.key import CONFIRM_OPTION, ask_on_terminal, parse_confirmations
from duo_ods.keys.kek import confirmer


@click.group()
def backup() -> None:
    """The backup store: wrapped key bundles, kept longer than the nodes keep the keys."""


@backup.command("list")
@pass_ctx
def backup_list_cmd(ctx: Ctx) -> None:
    """Every bundle: zone, role, key tag, age, and where the key still lives."""
    rows = backup_list(ctx.duo, ctx.client)
    # Which keys are dead is decided exactly as `backup prune` decides it (its dry run), not read
    # from the ledger the last real prune wrote: the two commands always name the same keys.
    plan = prune(ctx.duo, ctx.client, dry_run=True)
    for r in rows:
        r["dead_since"] = plan["dead"].get(r["locator"]) if not plan["undecided"] else None
        r["dead"] = None if plan["undecided"] else r["locator"] in plan["dead"]
    lines = [f"{'ZONE':24} {'ROLE':4} {'TAG':>5} {'AGE(d)':>7} {'DEAD SINCE':16} {'IN HSM':10} IN ENFORCER"]
    for r in rows:
        hsm = ",".join(r["in_hsm"]) or "-"
        enforcer = "; ".join(r["in_enforcer"]) or "-"
        dead = "?" if r["dead"] is None else (_when(r["dead_since"]) if r["dead"] else "-")
        lines.append(
            f"{r['zone']:24} {r['role']:4} {r['keytag']:>5} {r['age_days']:>7} {dead:16} {hsm:10} {enforcer}"
        )
    if plan["undecided"]:
        lines.append(f"dead keys not known: {plan['undecided']}")
    ctx.emit({"bundles": rows, "undecided": plan["undecided"]}, "\n".join(lines))


def _when(epoch: float | None) -> str:
    """A UTC time for a column: 2026-11-29 12:30."""
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


@backup.command("verify")
@pass_ctx
def backup_verify_cmd(ctx: Ctx) -> None:
    """Unwrap every bundle in the backup's token and match it; find keys in use without a bundle."""
    result = backup_verify(ctx.duo, ctx.client)
    text = [f"{result['bundles']} bundles; " + ("all restore" if result["ok"] else "PROBLEMS:")]
    ctx.emit(result, "\n".join([*text, *[f"  {p}" for p in result["problems"]]]))
    sys.exit(0 if result["ok"] else 1)


@backup.command("snapshot")
@click.option("--node", help="node to take it from (default: the first that answers)")
@pass_ctx
def backup_snapshot_cmd(ctx: Ctx, node: str | None) -> None:
    """Keep the zones and every key's enforcer state in the backup store (restore rebuilds from it)."""
    result = take_snapshot(ctx.duo, ctx.client, node)
    ctx.emit(result, f"snapshot of node {result['node']}: {result['zones']} zones in {result['path']}")


@backup.command("restore")
@click.option("--node", required=True, help="the wiped node to rebuild")
@click.option(
    "--from", "source", type=click.Choice(SOURCES),
    help="state from a live peer or the backup's latest snapshot (default: a peer if one answers)",
)  # fmt: skip
@click.option(
    "--allow-older", is_flag=True,
    help="restore even where the newest input available is older than what a secondary serves",
)  # fmt: skip
@CONFIRM_OPTION
@pass_ctx
def backup_restore_cmd(
    ctx: Ctx, node: str, source: str | None, allow_older: bool, confirmations: tuple[str, ...]
) -> None:
    """Rebuild a wiped node: token, KEK, keys, enforcer database, zones and key states.

    Each zone gets the newest input available (the controller's newest-input record, a live
    peer's, the snapshot's only where nothing newer exists); refused when that is older than what
    a secondary serves, unless --allow-older. A restore of this node that was killed or failed half
    way (the key journal has it) is finished first: its half-built node is stopped and built on.
    A node reached over ssh gets the KEK only once its transport key is confirmed: --confirm
    NODE=FINGERPRINT as `kek offer` shows it on the node, or the answer at a prompt.
    """
    confirm = confirmer(ctx.duo, parse_confirmations(confirmations), ask_on_terminal)
    with ctx.progress(f"backup restore of node {node}"):
        r = restore_node(ctx.duo, ctx.client, node, source, allow_older, confirm=confirm)
    age = f", snapshot taken {r['snapshot_age']} ago" if r["snapshot_age"] else ""
    inputs = ", ".join(f"{z} from the {src}" for z, src in sorted(r["inputs"].items()))
    text = [
        *([r["resumed"]] if r.get("resumed") else []),
        f"node {r['node']} restored from {r['from']} ({r['source']}{age}): {len(r['zones'])} zones, "
        f"{r['keys']} keys, KEK {r['kek']}",
        f"  inputs: {inputs or 'none'}",
        f"  serving: {', '.join(r['serving']) or 'nothing yet'}",
        *[f"  older than a secondary (allowed): {o}" for o in r["older_allowed"]],
        *([f"  then: {r['finished']}"] if r.get("finished") else []),
        *([f"  warning: {r['pending']}"] if r.get("pending") else []),
    ]
    ctx.emit(r, "\n".join(text))


@backup.command("prune")
@click.option("--dry-run", is_flag=True, help="say what would go, remove nothing")
@pass_ctx
def backup_prune_cmd(ctx: Ctx, dry_run: bool) -> None:
    """Remove bundles of keys dead on every node for longer than [backup] retention."""
    r = prune(ctx.duo, ctx.client, dry_run)
    if r["undecided"]:
        ctx.emit(r, r["undecided"])
        return
    verb = "would remove" if dry_run else "removed"
    held = {b.locator: b for b in bundles(ctx.client)} if r["dead"] or r["removed"] else {}
    lines = [
        f"{verb} {len(r['removed'])} bundles; {len(r['dead'])} keys dead on every node, kept until "
        f"the retention ({ctx.duo.config.backup.retention}) has passed"
    ]
    for locator, since in sorted(r["dead"].items(), key=lambda item: item[1]):
        b = held.get(locator)
        lines.append(f"  dead since {_when(since)} UTC: {f'{b.zone} {b.role} {b.keytag}' if b else locator}")
    lines += [f"  {verb}: {locator}" for locator in r["removed"]]
    ctx.emit(r, "\n".join(lines))
