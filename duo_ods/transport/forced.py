"""The node side of the ssh transport: what a forced command lets the controller run.

In authorized_keys, `command="ods-duo --config CONF node serve-ssh",restrict`
makes every connection with the controller's key run `node serve-ssh`, whatever
the client asked for. The client's request arrives in SSH_ORIGINAL_COMMAND and
is accepted only in the two shapes the ssh transport sends:

    ods-duo --config CONF node serve --node NODE          (a session: many operations, JSON lines)
    ods-duo --config CONF node op OPERATION --node NODE   (one operation)

with CONF exactly the config the forced command was given, OPERATION a known
node operation and NODE a node of that config (optionally one named node only).
In a session each request's operation is checked the same way as it arrives.
Anything else is refused with one line; nothing runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import PurePosixPath

from duo_ods.errors import DuoError

PROGRAM = "ods-duo"
SHAPE = f"{PROGRAM} --config PATH node op OPERATION --node NODE"
SESSION_SHAPE = f"{PROGRAM} --config PATH node serve --node NODE"
MAX_SHOWN = 80


class RefusedCommand(DuoError):
    """The forced command refused what the ssh client asked for."""


@dataclass(frozen=True)
class Request:
    operation: str | None  # None: a session, whose operations are checked one by one
    node: str


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def parse_request(
    original: str | None,
    config_path: str,
    operations: Collection[str],
    nodes: Collection[str],
    only_node: str | None = None,
) -> Request:
    """The one operation SSH_ORIGINAL_COMMAND asks for, or RefusedCommand."""
    if original is None or not original.strip():
        raise RefusedCommand(f"no command given; this key may only run `{SHAPE}`")
    try:
        words = shlex.split(original)
    except ValueError as exc:
        raise RefusedCommand(f"cannot parse the command {_shown(original)}: {exc}") from None
    one_op = len(words) == 8 and words[3:5] == ["node", "op"] and words[6] == "--node"
    session = len(words) == 7 and words[3:6] == ["node", "serve", "--node"]
    if not (one_op or session) or PurePosixPath(words[0]).name != PROGRAM or words[1] != "--config":
        raise RefusedCommand(f"{_shown(original)} is not `{SHAPE}` or `{SESSION_SHAPE}`")
    config, node = words[2], words[-1]
    operation = words[5] if one_op else None
    if config != config_path:
        raise RefusedCommand(f"--config {_shown(config)}: this key may only use {config_path}")
    if operation is not None and operation not in operations:
        raise RefusedCommand(f"unknown operation {_shown(operation)}")
    if node == "backup":
        raise RefusedCommand("the backup store lives with the controller and is not reached over ssh")
    if node not in nodes:
        raise RefusedCommand(f"no node {_shown(node)} in {config_path}")
    if only_node is not None and node != only_node:
        raise RefusedCommand(f"this key may only reach node {only_node}, not {_shown(node)}")
    return Request(operation, node)
