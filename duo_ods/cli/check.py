"""`ods-duo check`: the cross-validation of every signer and the secondaries (all pairs)."""

from __future__ import annotations

import json
import sys

import click

from duo_ods.check.ds import parse_ds_options
from duo_ods.check.fetch import DEFAULT_TIMEOUT
from duo_ods.check.model import Thresholds, ZoneReport
from duo_ods.check.output import NAGIOS_UNKNOWN, as_json, as_nagios, as_table, explain_unkeyed, no_copy_from
from duo_ods.check.run import check_duo, check_given
from duo_ods.check.sources import parse_source
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.dns.names import normalize_zone_name
from duo_ods.dns.tsig import TsigKey, transfer_key
from duo_ods.errors import DuoError


def _transfer_key(ctx: Ctx) -> TsigKey | None:
    """The duo's transfer key for --source servers, when a duo config is at hand (files need none)."""
    try:
        duo = ctx.duo
    except DuoError:
        return None
    return transfer_key(duo)


def _source_spec(ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]) -> tuple[str, ...]:
    """ADDR:PORT with a port out of range is a usage error, not a connection that fails."""
    for spec in specs:
        target = parse_source(spec)
        if isinstance(target, tuple) and not 1 <= target[1] <= 65535:
            raise click.BadParameter(f"{spec}: port {target[1]} is not in 1-65535")
    return specs


def _explain_unkeyed(ctx: Ctx, reports: list[ZoneReport]) -> list[ZoneReport]:
    """A zone without keys is not served by the signers: say that, not "no AXFR" per copy. Asked
    only when a signer gave no copy (the common case costs nothing)."""
    nodes = set(ctx.duo.nodes)
    if not any(no_copy_from(r, nodes) for r in reports):
        return reports
    from duo_ods.keys.flow import zones_without_keys  # noqa: PLC0415 (only when a signer gave nothing)

    try:
        unkeyed = set(zones_without_keys(ctx.duo, ctx.client))
    except DuoError:
        return reports  # a node that does not answer: the reports say so already
    return explain_unkeyed(reports, unkeyed)


@click.command("check")
@click.argument("zones", nargs=-1, metavar="[ZONE...]")
@click.option("--nagios", is_flag=True, help="one plugin line with perfdata; exit 0/1/2/3")
@click.option(
    "--source", "sources", multiple=True, callback=_source_spec,
    help="ADDR:PORT or a zone FILE instead of the duo (repeat)",
)  # fmt: skip
@click.option(
    "--ds", "ds_records", multiple=True,
    help="a DS the parent has ('ZONE. IN DS ...'; repeat): every copy must be signed by a key it points to",
)  # fmt: skip
@click.option(
    "--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=0.1),
    help="seconds a copy's server may stay silent; one that does is not waited for again in this run",
)  # fmt: skip
@click.option("--warn-days", default=3.0, show_default=True, help="warn when a signature expires sooner")
@click.option("--crit-days", default=1.0, show_default=True, help="critical when a signature expires sooner")
@click.option("--serial-spread", default=10, show_default=True, help="warn when serials are further apart")
@pass_ctx
def check(
    ctx: Ctx,
    zones: tuple[str, ...],
    nagios: bool,
    sources: tuple[str, ...],
    ds_records: tuple[str, ...],
    warn_days: float,
    crit_days: float,
    serial_spread: int,
    timeout: float,
) -> None:
    """Prove the mix: each copy valid, and every signature valid under every other copy's keys.

    Exit status: 0 when every zone is ok, 1 otherwise (with --nagios: 0/1/2/3 as plugins do).
    """
    limits = Thresholds(warn_expiry_days=warn_days, crit_expiry_days=crit_days, serial_spread=serial_spread)
    if sources and len(zones) != 1:
        raise click.UsageError("--source needs exactly one ZONE")
    try:
        names = [normalize_zone_name(z) for z in zones]
        parent_ds = parse_ds_options(ds_records, names or None)  # all zones: checked once they are known
        if sources:
            given = parent_ds.get(names[0], [])
            reports = [check_given(names[0], sources, given, limits, _transfer_key(ctx), timeout)]
        else:
            with ctx.progress("check", total=len(names) or None) as shown:
                reports = check_duo(
                    ctx.duo, ctx.client, names, limits, timeout=timeout, parent_ds=parent_ds,
                    on_zone=lambda report: shown.advance(),
                )  # fmt: skip
            reports = _explain_unkeyed(ctx, reports)
    except DuoError as exc:
        if nagios:
            click.echo(f"DUO UNKNOWN - {exc}")
            sys.exit(NAGIOS_UNKNOWN)
        raise
    if nagios:
        code, line = as_nagios(reports)
        click.echo(line)
        sys.exit(code)
    if ctx.json:
        click.echo(json.dumps(as_json(reports), indent=2, sort_keys=True))
    else:
        click.echo(as_table(reports))
    sys.exit(0 if all(r.ok for r in reports) else 1)
