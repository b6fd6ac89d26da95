"""`ods-duo`: the command line. Known errors print as one line; -v adds tracebacks and debug logs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from duo_ods import __version__
from duo_ods.cli.backup import backup
from duo_ods.cli.bind import bind_config
from duo_ods.cli.check import check
from duo_ods.cli.context import Ctx
from duo_ods.cli.key import kek, key
from duo_ods.cli.lab import lab
from duo_ods.cli.node import node
from duo_ods.cli.watch import watch
from duo_ods.cli.zone import zone
from duo_ods.errors import DuoError


@click.group()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="duo config file (TOML)")
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
@click.option("-v", "--verbose", is_flag=True, help="debug logging and tracebacks")
@click.version_option(__version__, prog_name="ods-duo")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, as_json: bool, verbose: bool) -> None:
    """Two live OpenDNSSEC signers sharing keys, signing independently."""
    long_running = ctx.invoked_subcommand == "watch"  # a service: its log says what it did
    logging.basicConfig(
        level=logging.DEBUG if verbose else (logging.INFO if long_running else logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Ctx(config_path=config_path, json=as_json, verbose=verbose)


cli.add_command(lab)
cli.add_command(node)
cli.add_command(zone)
cli.add_command(key)
cli.add_command(kek)
cli.add_command(check)
cli.add_command(bind_config)
cli.add_command(watch)
cli.add_command(backup)


def main() -> None:
    verbose = "-v" in sys.argv[1:] or "--verbose" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("ods-duo: aborted", err=True)
        sys.exit(130)
    except DuoError as exc:
        if verbose:
            logging.exception("failed")
        click.echo(f"ods-duo: error: {exc}", err=True)
        sys.exit(1)
