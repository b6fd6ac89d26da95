"""The controller's side of the relays: ask every node to bring its relay and catalog up to date."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient

log = logging.getLogger(__name__)


def relay_sync(client: NodeClient, node: str) -> P.RelaySyncReply | None:
    """One node's relay sync; a node that does not answer is reported and skipped (its relay keeps
    serving what it has)."""
    try:
        return client.call(node, P.RELAY_SYNC)
    except DuoError as exc:
        log.warning("relay of node %s not synced: %s", node, exc)
        return None


def relay_sync_all(duo: Duo, client: NodeClient, settle: float = 5.0) -> dict[str, P.RelaySyncReply]:
    """Every node's relay sync, repeated (for up to `settle` seconds) while a relay carries a zone
    its catalog does not list yet: the catalog lists a zone only once the relay serves it."""
    deadline = time.monotonic() + settle
    replies: dict[str, P.RelaySyncReply] = {}
    nodes = list(duo.nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        while True:
            # Every node at once: one that is slow to answer does not hold up the others' relays.
            for name, reply in zip(nodes, pool.map(lambda n: relay_sync(client, n), nodes), strict=True):
                if reply is not None:
                    replies[name] = reply
            waiting = any(set(r.zones) - set(r.members) for r in replies.values())
            if not waiting or time.monotonic() > deadline:
                return replies
            time.sleep(0.3)


class RelayTicker:
    """The watcher's hook: its node's relay sync every `interval` seconds (new signed zones reach the
    relay, then the catalog; removed ones leave both)."""

    def __init__(self, client: NodeClient, node: str, interval: float = 1.0) -> None:
        self.client = client
        self.node = node
        self.interval = interval
        self.next = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() < self.next:
            return
        self.next = time.monotonic() + self.interval
        relay_sync(self.client, self.node)
