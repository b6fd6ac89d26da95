"""`ods-duo backup ...`: the backup store of key bundles."""

from __future__ import annotations

import sys

import click

from duo_ods.backup.report import backup_list, backup_verify
from duo_ods.cli.context import Ctx, pass_ctx


@click.group()
def backup() -> None:
    """The backup store: wrapped key bundles, kept longer than the nodes keep the keys."""


@backup.command("list")
@pass_ctx
def backup_list_cmd(ctx: Ctx) -> None:
    """Every bundle: zone, role, key tag, age, and where the key still lives."""
    rows = backup_list(ctx.duo, ctx.transport)
    lines = [f"{'ZONE':24} {'ROLE':4} {'TAG':>5} {'AGE(d)':>7} {'IN HSM':10} IN ENFORCER"]
    for r in rows:
        hsm = ",".join(r["in_hsm"]) or "-"
        enforcer = "; ".join(r["in_enforcer"]) or "-"
        lines.append(f"{r['zone']:24} {r['role']:4} {r['keytag']:>5} {r['age_days']:>7} {hsm:10} {enforcer}")
    ctx.emit({"bundles": rows}, "\n".join(lines))


@backup.command("verify")
@pass_ctx
def backup_verify_cmd(ctx: Ctx) -> None:
    """Unwrap every bundle in the backup's token and match it; find keys in use without a bundle."""
    result = backup_verify(ctx.duo, ctx.transport)
    text = [f"{result['bundles']} bundles; " + ("all restore" if result["ok"] else "PROBLEMS:")]
    ctx.emit(result, "\n".join([*text, *[f"  {p}" for p in result["problems"]]]))
    sys.exit(0 if result["ok"] else 1)
