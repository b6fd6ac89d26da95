"""`ods-duo watch --node NODE`: the file-watch trigger on a node's input directory (long-running)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.watch.service import Watcher


@click.command("watch")
@click.option("--node", "node_name", required=True, help="the node whose input directory to watch")
@pass_ctx
def watch(ctx: Ctx, node_name: str) -> None:
    """Zone files dropped into the node's input directory are checked, added or re-signed.

    Runs until SIGTERM or SIGINT; a restart picks up what changed meanwhile and nothing else.
    """
    duo = ctx.duo
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Watcher(duo, duo.node(node_name), ctx.client).run(stop)
