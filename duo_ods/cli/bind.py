"""`ods-duo bind-config`: named.conf statements for the secondaries (from the relays, AXFR only, TSIG)."""

from __future__ import annotations

from pathlib import Path

import click

from duo_ods.bind.render import (
    check_zones_snippet,
    render_catalog_options,
    render_catalog_zones,
    render_zones,
)
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
@click.option(
    "--catalog/--zones",
    "catalog",
    default=True,
    help="the duo's catalog zones, members learnt by named itself (default), or every zone listed",
)
@click.option(
    "--zone-directory",
    default="catz",
    show_default=True,
    help="with --catalog: where named keeps the member zones (relative to its directory)",
)
@pass_ctx
def bind_config(
    ctx: Ctx, mode: str | None, secondary: str | None, output: Path | None, catalog: bool, zone_directory: str
) -> None:
    """Statements for the secondaries, pulling from the relays with the transfer key, checked with
    named-checkconf.

    --catalog (default): server and catalog zone statements for the top level of named.conf, and a
    fragment for INSIDE its options { } (catalog-zones, request-ixfr no, allow-notify); with --output
    FILE the fragment goes to FILE.options. The secondary then learns every zone from the catalogs:
    nothing to re-render when zones come and go. --zones: every current zone listed.

    named must also include the transfer key file (a BIND key statement; made here when missing).
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
    zones = [] if catalog else sorted(set().union(*node_zones(duo, ctx.client).values()))
    parts: list[tuple[str, str]] = []
    for name in chosen:
        if catalog:
            snippet = render_catalog_zones(duo, name, mode)
            options = render_catalog_options(duo, name, mode, zone_directory)
        else:
            snippet, options = render_zones(duo, name, mode, zones), ""
        check_zones_snippet(duo, snippet, duo.tsig_key_path, options)
        head = f'// include "{duo.tsig_key_path}"; (the transfer key) before this\n'
        parts.append((head + snippet, options))
    what = "catalog" if catalog else f"{len(zones)} zones"
    if output is not None:
        write_atomic(output, parts[0][0])
        if catalog:
            write_atomic(output.with_name(output.name + ".options"), parts[0][1])
        click.echo(f"wrote {output} for secondary {chosen[0]} ({mode}, {what})", err=True)
        return
    for snippet, options in parts:
        click.echo(snippet, nl=False)
        if options:
            click.echo("// ---- inside options { }:\n" + options, nl=False)
