import subprocess
import sys

import click

from duo_ods.cli.main import COMMANDS, cli


def test_every_command_loads_under_its_name() -> None:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(ctx, "nope") is None


def test_a_node_operation_does_not_import_the_other_commands() -> None:
    """Each node operation is a process of its own: it must not pay for check, lab or BIND imports."""
    code = (
        "import sys; from duo_ods.cli.main import cli; import click;"
        "cli.get_command(click.Context(cli), 'node');"
        "print(sorted(m for m in sys.modules if m.startswith(('duo_ods.cli.', 'duo_ods.check'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "duo_ods.check" not in out and "duo_ods.cli.lab" not in out and "duo_ods.cli.node" in out
