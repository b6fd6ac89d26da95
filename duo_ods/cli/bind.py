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
from duo_ods.config.resolve import Duo
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
    With --json: one document, {"mode", "catalog", "zones", "key_file", "secondaries": {NAME: TEXT},
    "options": {NAME: TEXT}} (and "output": FILE when written there), instead of the named.conf text.
    """
    duo = ctx.duo
    t = duo.config.transfer
    mode = mode or t.mode
    if catalog and mode != t.mode:
        # The relays serve the catalogs of the duo's own mode (relay/catalog.py: one for failover, one
        # per signer for split): a secondary of the other mode would find no catalog to fail over with.
        raise click.UsageError(
            f"--mode {mode}: the relays serve catalog zones for the config's transfer.mode ({t.mode}); "
            f'render {mode} with --zones, or set transfer.mode = "{mode}"'
        )
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
    listed = None if catalog else zones
    parts = {name: _render(duo, name, mode, listed, zone_directory) for name in chosen}
    what = "catalog" if catalog else f"{len(zones)} zones"
    report: dict[str, object] = {
        "mode": mode,
        "catalog": catalog,
        "zones": zones,
        "key_file": str(duo.tsig_key_path),
        "secondaries": {name: text for name, (text, _) in parts.items()},
        "options": {name: options for name, (_, options) in parts.items() if options},
    }
    if output is not None:
        text, options = parts[chosen[0]]
        write_atomic(output, text)
        if catalog:
            write_atomic(output.with_name(output.name + ".options"), options)
        if ctx.json:
            ctx.emit({**report, "output": str(output)}, "")
        else:
            click.echo(f"wrote {output} for secondary {chosen[0]} ({mode}, {what})", err=True)
    elif ctx.json:
        ctx.emit(report, "")
    else:
        for text, options in parts.values():
            click.echo(text, nl=False)
            if options:
                click.echo("// ---- inside options { }:\n" + options, nl=False)


def _render(duo: Duo, name: str, mode: str, zones: list[str] | None, zone_directory: str) -> tuple[str, str]:
    """One secondary's statements and its options fragment ("" without a catalog: `zones` listed),
    checked with named-checkconf."""
    if zones is None:
        snippet = render_catalog_zones(duo, name, mode)
        options = render_catalog_options(duo, name, mode, zone_directory)
    else:
        snippet, options = render_zones(duo, name, mode, zones), ""
    check_zones_snippet(duo, snippet, duo.tsig_key_path, options)
    head = f'// include "{duo.tsig_key_path}"; (the transfer key) before this\n'
    return head + snippet, options
