"""Snapshots: what a rebuilt node needs besides its keys, kept in the backup store.

A snapshot holds, from one node: every zone with its last good input, and the enforcer
state of every key (kasp.db rows, see duo_ods.ods.kaspdb). Keys themselves are in the
bundles. ods-duo takes one after every key command and on `backup snapshot` (run it from
cron or a timer too), and the key origin's watcher after its changes, at most every
[backup] snapshot_interval.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient

log = logging.getLogger(__name__)


def node_state(client: NodeClient, node: str) -> P.Snapshot:
    """One node's zones (with their inputs) and key states, as a snapshot holds them."""
    exported = client.call(node, P.STATE_EXPORT)
    return P.Snapshot(taken=time.time(), node=node, zones=exported.zones)


def take_snapshot(duo: Duo, client: NodeClient, node: str | None = None) -> dict[str, Any]:
    """From `node`, else the first node that answers; stored in the backup store."""
    tried: list[str] = []
    for candidate in [node] if node else list(duo.nodes):
        try:
            snapshot = node_state(client, candidate)
        except DuoError as exc:
            tried.append(f"{candidate}: {exc}")
            continue
        path = client.call("backup", P.SNAPSHOT_PUT, P.SnapshotPutRequest(snapshot=snapshot)).path
        log.info("snapshot of node %s (%d zones) in %s", candidate, len(snapshot.zones), path)
        return {"node": candidate, "zones": len(snapshot.zones), "path": path, "taken": snapshot.taken}
    raise DuoError("no node gave a snapshot: " + "; ".join(tried))


def snapshot_after(duo: Duo, client: NodeClient, what: str) -> str | None:
    """After a key command: a snapshot, or a warning when it could not be taken (the command stands)."""
    try:
        take_snapshot(duo, client)
    except DuoError as exc:
        warning = f"{what} done, but no backup snapshot was taken ({exc}); run `ods-duo backup snapshot`"
        log.warning("%s", warning)
        return warning
    return None
