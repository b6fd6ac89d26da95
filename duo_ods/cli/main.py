"""`ods-duo`: the command line. Known errors print as one line; -v adds tracebacks and debug logs."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from duo_ods import __version__
from duo_ods.cli.context import Ctx
from duo_ods.errors import DuoError

# Command name -> "module:object". Loaded on use: every node operation is a fresh `ods-duo node op`
# process (one per step of key create, two per watcher update), and importing every command's
# dependencies (check's crypto, the lab, BIND rendering) cost each of them about 0.1 s.
COMMANDS = {
    "lab": "duo_ods.cli.lab:lab",
    "node": "duo_ods.cli.node:node",
    "zone": "duo_ods.cli.zone:zone",
    "key": "duo_ods.cli.key:key",
    "kek": "duo_ods.cli.key:kek",
    "check": "duo_ods.cli.check:check",
    "bind-config": "duo_ods.cli.bind:bind_config",
    "watch": "duo_ods.cli.watch:watch",
    "backup": "duo_ods.cli.backup:backup",
    "metrics": "duo_ods.cli.metrics:metrics",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup)
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
    ctx.call_on_close(ctx.obj.close)


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
