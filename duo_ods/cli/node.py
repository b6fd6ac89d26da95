"""`ods-duo node ...`: node-local work. `node op` is what transports run on a node."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection

import click

from duo_ods.backup.ops import BACKUP_HANDLERS
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.cli.text import field_lines
from duo_ods.errors import DuoError
from duo_ods.node.handlers import NODE_HANDLERS
from duo_ods.protocol import ops as P
from duo_ods.protocol.fields import MAX_PAYLOAD, Message
from duo_ods.protocol.ops import Rep
from duo_ods.protocol.serve import RequestError, dispatch, read_payload, read_request_line
from duo_ods.transport.base import encode_reply
from duo_ods.transport.forced import RefusedCommand, parse_request
from duo_ods.zones.catchup import start_node


@click.group()
def node() -> None:
    """Work on one signer node."""


def _run_operation(ctx: Ctx, operation: str, node_name: str) -> None:
    """Run one operation on this host: JSON request on stdin, JSON reply on stdout."""
    # The target's own token store decides SOFTHSM2_CONF (see TokenRef); one inherited from
    # the caller would point this process at another node's tokens.
    os.environ.pop("SOFTHSM2_CONF", None)
    try:
        payload = read_payload(sys.stdin.read(MAX_PAYLOAD + 1))
        result = dispatch(
            ctx.duo,
            node_name,
            operation,
            payload,
            node_handlers=NODE_HANDLERS,
            backup_handlers=BACKUP_HANDLERS,
        )
    except DuoError as exc:
        click.echo(encode_reply(error=exc))
        sys.exit(1)
    click.echo(encode_reply(result))


def _serve(ctx: Ctx, node_name: str, allowed: Collection[str] | None = None) -> None:
    """Answer requests until the end of input: one JSON line in, one JSON reply line out.
    `allowed`: the operations this caller may run (a forced command's key), None for any."""
    os.environ.pop("SOFTHSM2_CONF", None)  # see _run_operation
    if node_name != "backup":
        ctx.duo.node(node_name)  # an unknown node is an error before any request
    while True:
        try:
            # bounded: a huge line is refused without being read whole (not `for line in stdin`)
            line = read_request_line(sys.stdin.buffer)
            if line is None:
                break
            if not line.strip():
                continue
            request = read_payload(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise RequestError('a request is {"op": NAME, "payload": {...}}')
            if allowed is not None and request["op"] not in allowed:
                raise RequestError(f"operation {request['op'][:80]!r} is not allowed for this key")
            result = dispatch(
                ctx.duo, node_name, request["op"], request.get("payload", {}),
                node_handlers=NODE_HANDLERS, backup_handlers=BACKUP_HANDLERS,
            )  # fmt: skip
            reply = encode_reply(result)
        except DuoError as exc:
            reply = encode_reply(error=exc)
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


@node.command("serve", hidden=True)
@click.option("--node", "node_name", required=True, help="a node name, or 'backup'")
@pass_ctx
def node_serve(ctx: Ctx, node_name: str) -> None:
    """The node's agent: many operations over one pipe (JSON lines), until the end of input."""
    _serve(ctx, node_name)


@node.command("op", hidden=True)
@click.argument("operation")
@click.option("--node", "node_name", required=True, help="a node name, or 'backup'")
@pass_ctx
def node_op(ctx: Ctx, operation: str, node_name: str) -> None:
    """Run one node-local operation: JSON payload on stdin, JSON reply on stdout."""
    _run_operation(ctx, operation, node_name)


@node.command("serve-ssh")
@click.option("--node", "only_node", help="accept operations for this one node only")
@click.option(
    "--read-only", is_flag=True, help="accept only operations that change nothing (a monitoring key)"
)
@pass_ctx
def serve_ssh(ctx: Ctx, only_node: str | None, read_only: bool) -> None:
    """Forced command for the controller's key in authorized_keys (see docs/ssh-transport.md).

    Runs the session (`ods-duo --config CONF node serve --node NODE`) or the one
    operation (`... node op OPERATION --node NODE`) that SSH_ORIGINAL_COMMAND asks for,
    where CONF is this command's own config; refuses anything else with one line on stderr.
    With --read-only, only operations that change nothing (status, zone and key listings,
    custody reports) are accepted.
    """
    config = str(ctx.find_config())
    allowed = {
        name for name, op in P.TABLE.items() if op.runs != "backup" and (op.reads_only or not read_only)
    }
    try:
        request = parse_request(
            os.environ.get("SSH_ORIGINAL_COMMAND"), config, allowed, ctx.duo.config.nodes, only_node
        )
    except RefusedCommand as exc:
        click.echo(f"ods-duo serve-ssh: refused: {exc}", err=True)
        sys.exit(1)
    if request.operation is None:
        _serve(ctx, request.node, allowed)
    else:
        _run_operation(ctx, request.operation, request.node)


def _lines(reply: Message) -> str:
    """A reply as 'field: value' lines for a person (no Python values: see cli/text.py)."""
    data = reply.model_dump(mode="json")
    if isinstance(data.get("daemons"), dict):  # a daemon without a pid is not running
        data["daemons"] = {d: "not running" if pid is None else pid for d, pid in data["daemons"].items()}
    return field_lines(data)


def _simple(op: P.Op[P.Empty, Rep], help_text: str) -> click.Command:
    """A command of the same name as a node operation that takes no arguments."""

    @click.argument("node_name", metavar="NODE")
    @pass_ctx
    def command(ctx: Ctx, node_name: str) -> None:
        ctx.duo.node(node_name)  # a clear error for an unknown node before any work
        reply = ctx.client.call(node_name, op)
        ctx.emit(reply.model_dump(mode="json"), _lines(reply))

    return click.command(op.name, help=help_text)(command)


@node.command("init")
@click.argument("node_name", metavar="NODE")
@click.option("--dry-run", is_flag=True, help="show the plan only (system-layout nodes)")
@pass_ctx
def node_init(ctx: Ctx, node_name: str, dry_run: bool) -> None:
    """Make the node's directories, token, enforcer database and configs.

    A system-layout node shows its plan first (what each step creates or changes, and what
    already matches), then acts; run again, it finds nothing to do.
    """
    target = ctx.duo.node(node_name)
    if target.config.layout != "system":
        if dry_run:
            raise click.UsageError(f"--dry-run: node {node_name} has the lab layout, which has no plan")
        made = ctx.client.call(node_name, P.INIT)
        shown = made.model_dump(mode="json", include={"node", "token_created", "database_created", "configs"})
        ctx.emit(made.model_dump(mode="json"), field_lines(shown))
        return
    plan = ctx.client.call(node_name, P.INIT, P.InitRequest(dry_run=True))
    header = f"node {node_name} (system layout, root {plan.root}): plan"
    if dry_run or not plan.pending:
        ctx.emit(plan.model_dump(mode="json"), f"{header}\n{plan.text}")
        return
    if not ctx.json:
        click.echo(f"{header}\n{plan.text}")
    result = ctx.client.call(node_name, P.INIT, P.InitRequest(dry_run=False))
    done = "\n".join(f"  done     {d.kind:<9} {d.target}" for d in result.done)
    ctx.emit(result.model_dump(mode="json"), f"node {node_name}: {len(result.done)} step(s) done\n{done}")


@node.command("start")
@click.argument("node_name", metavar="NODE")
@pass_ctx
def node_start(ctx: Ctx, node_name: str) -> None:
    """Start the node's ods-signerd and ods-enforcerd, after giving it every zone's newest input.

    A node that missed updates while it was down gets them BEFORE its signer starts (else it
    re-signs its old input with a new, higher serial); after the start, each caught-up zone is
    signed with a serial above any stale copy and the secondaries are notified.
    """
    ctx.duo.node(node_name)  # a clear error for an unknown node before any work
    r = start_node(ctx.duo, ctx.client, node_name)
    lines = [f"node {node_name}: " + ", ".join(f"{d} pid {pid}" for d, pid in r["pids"].items())]
    for where, done in r["done"].items():
        lines.append(f"  caught up {where}: serves serial {done.get('serial')}")
    lines += [f"  NOT caught up {where}: {why}" for where, why in r["failed"].items()]
    ctx.emit(r, "\n".join(lines))
    if r["failed"]:
        raise SystemExit(1)


node.add_command(_simple(P.STOP, "Stop the node's daemons (by pid)."))
node.add_command(_simple(P.STATUS, "Show the node's daemons and zones."))
node.add_command(_simple(P.POLICY_IMPORT, "Load the rendered kasp.xml into the node's enforcer."))
