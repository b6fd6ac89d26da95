"""`ods-duo metrics`: the Prometheus exporter (long-running), or a textfile for node_exporter."""

from __future__ import annotations

import logging
import signal
import sys
from functools import partial
from pathlib import Path
from types import FrameType

import click

from duo_ods.check.fetch import DEFAULT_TIMEOUT
from duo_ods.check.model import Thresholds
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.metrics.exporter import Exporter
from duo_ods.metrics.gather import check, gather
from duo_ods.protocol.client import NodeClient

DEFAULT_PORT = 9553
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


def parse_listen(value: str) -> tuple[str, int]:
    """ADDR:PORT (or [v6]:PORT), port 1-65535."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{value!r}: give ADDR:PORT with a port from 1 to 65535", param_hint="--listen"
        )
    return host.strip("[]"), int(port)


@click.command("metrics")
@click.option("--listen", help=f"serve /metrics on ADDR:PORT (default {DEFAULT_LISTEN} unless --textfile)")
@click.option(
    "--interval", default=15.0, show_default=True, type=click.FloatRange(min=0.5),
    help="seconds between refreshes of the daemons and watchers (a scrape reuses the last refresh)",
)  # fmt: skip
@click.option(
    "--check-interval", default=300.0, show_default=True, type=click.FloatRange(min=0.5),
    help="seconds between checks of every zone (and the key states and backup store); at least ten "
    "times the last check's duration",
)  # fmt: skip
@click.option(
    "--textfile", type=click.Path(path_type=Path, dir_okay=False),
    help="also write each refresh to this file (node_exporter's textfile collector: a *.prom file)",
)  # fmt: skip
@click.option("--once", is_flag=True, help="refresh once, write --textfile or print the metrics, and exit")
@click.option(
    "--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=0.1),
    help="seconds a copy's server may stay silent during a refresh's check",
)  # fmt: skip
@pass_ctx
def metrics(
    ctx: Ctx,
    listen: str | None,
    interval: float,
    check_interval: float,
    textfile: Path | None,
    once: bool,
    timeout: float,
) -> None:
    """Prometheus metrics of the duo: check's findings per zone and copy, the daemons, the backup
    store, the watchers and node operation times.

    Checks every zone every --check-interval seconds and reads the daemons and watchers every
    --interval seconds; a scrape returns the last refresh. Runs until SIGTERM or SIGINT (unless --once).
    """
    logging.getLogger("duo_ods.metrics").setLevel(logging.DEBUG if ctx.verbose else logging.INFO)
    address = parse_listen(listen) if listen else None
    duo = ctx.duo
    exporter = Exporter()
    client = NodeClient(ctx.transport, [exporter.op_times.observe])
    refresh = partial(gather, duo, client)
    checking = partial(check, duo, client, Thresholds(), timeout)
    if once:
        checked = checking()
        exporter.refresh(partial(refresh, checked))
        if textfile is not None:
            exporter.write_textfile(textfile)
        else:
            sys.stdout.buffer.write(exporter.text())
        return
    if address is None and textfile is None:
        address = parse_listen(DEFAULT_LISTEN)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        exporter.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if address is not None:
        exporter.serve(*address)
        click.echo(f"serving http://{address[0]}:{address[1]}/metrics", err=True)
    exporter.run(refresh, checking, interval, check_interval, textfile)
