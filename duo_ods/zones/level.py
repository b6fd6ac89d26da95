"""Serial levelling: a node whose SOA serial for a zone lags too far is brought up.

Each signer counts its own serial and re-signs on its own schedule, so the serials drift
(ODS-FACTS: ...01 against ...06 in an afternoon). A secondary that fails over keeps the
higher serial it has and ignores the lagging node until that node passes it; levelling keeps
the gap small. The lagging node re-signs its current input with the leading node's serial.

Same serial, same content: before a lagging node is levelled, the zone is caught up
(duo_ods.zones.catchup), so a node that missed an update gets the newest input and is never
levelled with its stale input to the leader's serial. A node that cannot be caught up
(unreachable, failed, input newer than the record) is not levelled. Catching up nodes that do not
lag is catch_up's job (`zone catch-up`, the key origin's watcher every level_interval).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.zones.catchup import catch_up
from duo_ods.zones.manage import served_serials

log = logging.getLogger(__name__)


def lagging(served: dict[str, int | None], max_spread: int) -> tuple[int | None, list[str]]:
    """The leading serial and the nodes more than `max_spread` below it (silent nodes are left alone)."""
    known = {n: s for n, s in served.items() if s is not None}
    if len(known) < 2:
        return None, []
    top = max(known.values())
    return top, sorted(n for n, s in known.items() if top - s > max_spread)


def level_zone(duo: Duo, client: NodeClient, zone: str, max_spread: int | None = None) -> dict[str, Any]:
    spread = duo.config.serials.max_spread if max_spread is None else max_spread
    served = served_serials(duo, zone)
    top, behind = lagging(served, spread)
    caught_up: dict[str, Any] = {}
    stale: set[str] = set()
    if behind:  # only then (SOA queries are cheap, asking every node for its input is not)
        caught = catch_up(duo, client, zone=zone)
        stale = {s.node for s in caught.steps if s.action in ("newer-on-node", "unreachable")}
        stale |= {where.split(" ", 1)[0] for where in caught.failed}
        caught_up = {"done": caught.done, "failed": caught.failed}
        if caught.done:  # a caught-up node signed at a serial of its own choice: look again
            served = served_serials(duo, zone)
            top, behind = lagging(served, spread)
    result: dict[str, Any] = {
        "zone": zone, "served": served, "target": top, "levelled": [], "failed": {}, "caught_up": caught_up,
    }  # fmt: skip

    def resign(node: str) -> str | None:
        """Why the node could not be brought up (None: re-signed at the leader's serial)."""
        assert top is not None  # nodes lag only behind a known serial
        if node in stale:
            return "not levelled: its input is not the zone's newest (see catch-up)"
        try:
            client.call(node, P.ZONE_RESIGN, P.ZoneResignRequest(zone=zone, serial=top))
        except DuoError as exc:
            log.error(
                "zone %s: could not bring node %s up from %s to %s: %s", zone, node, served[node], top, exc
            )
            return str(exc)
        log.info("zone %s: node %s was at serial %s, %s behind; re-signed at %s", zone, node, served[node],
                 top - (served[node] or 0), top)  # fmt: skip
        return None

    # Every lagging node at once (with three or more signers, several may lag the leader).
    with ThreadPoolExecutor(max_workers=max(1, len(behind))) as pool:
        outcomes = dict(zip(behind, pool.map(resign, behind), strict=True))
    for node, failure in outcomes.items():
        if failure is None:
            result["levelled"].append(node)
        else:
            result["failed"][node] = failure
    return result
