"""`ods-duo bind-config`: named.conf statements for the secondaries (AXFR only, TSIG)."""

from __future__ import annotations

from pathlib import Path

import click

from duo_ods.bind.render import check_zones_snippet, render_zones
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.dns.tsig import ensure_tsig_key
from duo_ods.render.engine import write_atomic
from duo_ods.zones.manage import node_zones


@click.command("bind-config")
@click.option("--mode", type=click.Choice(["failover", "split"]), help="default: transfer.mode of the config")
@click.option("--secondary", "secondary", help="the secondary to render for (default: each in turn)")
@click.option(
    "--output", type=click.Path(path_type=Path), help="write to FILE (one secondary) instead of stdout"
)
@pass_ctx
def bind_config(ctx: Ctx, mode: str | None, secondary: str | None, output: Path | None) -> None:
    """Zone, server and primaries statements for the secondaries, checked with named-checkconf.

    named must also include the transfer key file (a BIND key statement; made here when missing).
    With --json: one document, {"mode", "zones", "key_file", "secondaries": {NAME: TEXT}} (and
    "output": FILE when written there), instead of the named.conf text.
    """
    duo = ctx.duo
    t = duo.config.transfer
    mode = mode or t.mode
    ensure_tsig_key(duo.tsig_key_path, t.key_name, t.algorithm)
    names = [s.name for s in duo.config.secondaries]
    if secondary is not None and secondary not in names:
        raise click.UsageError(
            f"--secondary {secondary}: not in the config (have: {', '.join(names) or 'none'})"
        )
    chosen = [secondary] if secondary else names
    if not chosen:
        raise click.UsageError("the config has no [[secondaries]]")
    if output is not None and len(chosen) > 1:
        raise click.UsageError("--output writes one secondary's config: add --secondary NAME")
    zones = sorted(set().union(*node_zones(duo, ctx.client).values()))
    parts: dict[str, str] = {}
    for name in chosen:
        snippet = render_zones(duo, name, mode, zones)
        check_zones_snippet(duo, snippet, duo.tsig_key_path)
        parts[name] = f'// include "{duo.tsig_key_path}"; (the transfer key) before this\n{snippet}'
    report = {"mode": mode, "zones": zones, "key_file": str(duo.tsig_key_path), "secondaries": parts}
    if output is not None:
        write_atomic(output, parts[chosen[0]])
        if ctx.json:
            ctx.emit({**report, "output": str(output)}, "")
        else:
            click.echo(f"wrote {output} for secondary {chosen[0]} ({mode}, {len(zones)} zones)", err=True)
    elif ctx.json:
        ctx.emit(report, "")
    else:
        click.echo("\n".join(parts.values()), nl=False)
