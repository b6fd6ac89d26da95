"""`ods-duo`: the command line. Known errors print as one line (exit 1), usage errors as click shows
them (exit 2, USAGE_EXIT); -v adds tracebacks and debug logs. --json and -v go before or after the
command."""

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


USAGE_EXIT = 2  # click's own code for a usage error; the README states it
ERROR_EXIT = 1
PREFIX = "ods-duo: "


def _late_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    found = ctx.find_object(Ctx)
    if value and found is not None:
        found.json = True


def _late_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        found = ctx.find_object(Ctx)
        if found is not None:
            found.verbose = True
        logging.getLogger().setLevel(logging.DEBUG)


def _with_late_options(command: click.Command) -> click.Command:
    """--json and -v after the command too (`ods-duo lab status --json`), on every subcommand.

    The group's callback has made the Ctx before a subcommand's options are parsed, so these
    callbacks only switch it on."""
    if getattr(command, "_late_options", False):
        return command
    command.params += [
        click.Option(["--json"], is_flag=True, expose_value=False, callback=_late_json,
                     help="one JSON document on stdout (also before the command)"),
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_late_verbose,
                     help="debug logging and tracebacks (also before the command)"),
    ]  # fmt: skip
    command._late_options = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_late_options(sub)
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return _with_late_options(command)


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
    except click.UsageError as exc:
        exc.show()
        sys.exit(USAGE_EXIT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("ods-duo: aborted", err=True)
        sys.exit(130)
    except DuoError as exc:
        if verbose:
            logging.exception("failed")
        click.echo(error_line(exc), err=True)
        sys.exit(ERROR_EXIT)


def error_line(exc: DuoError) -> str:
    """One line; a message that names ods-duo itself already gets no second 'ods-duo:'."""
    message = str(exc)
    while message.startswith(PREFIX):
        message = message[len(PREFIX) :]
    return f"{PREFIX}error: {message}"
