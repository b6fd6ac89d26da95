"""One refresh of the exporter: `check` on every zone, the nodes' daemons and key states, the
backup store and the watchers' files, gathered into an Observation (metrics.observation).

Each source on its own: one that cannot be read is left out of the metrics and counted in
`ods_duo_exporter_refresh_errors` (its reason logged), the rest still shows. The watchers' files
are read from this host's node state folders: the exporter runs where the watchers run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from duo_ods.check.fetch import DEFAULT_TIMEOUT
from duo_ods.check.model import Thresholds
from duo_ods.check.run import check_duo
from duo_ods.config.durations import parse_duration
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.metrics.observation import KeyViews, Observation, WatcherView
from duo_ods.metrics.watchfile import load_stats, stats_path
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.watch.state import load_state, state_path

log = logging.getLogger(__name__)
T = TypeVar("T")
NODE_TIMEOUT = 10.0


def lifetimes(duo: Duo) -> dict[str, float]:
    policy = duo.config.policy
    return {
        "KSK": parse_duration(policy.ksk_lifetime),
        "ZSK": parse_duration(policy.zsk_lifetime),
        "CSK": parse_duration(policy.csk_lifetime),
    }


def _key_states(client: NodeClient, node: str) -> KeyViews:
    zones = client.call(node, P.KEY_STATES, P.KeyStatesRequest(), timeout=NODE_TIMEOUT).zones
    return {z.zone: [k.model_dump() for k in z.keys] for z in zones}


def _watcher(duo: Duo, node: str) -> WatcherView:
    state = duo.nodes[node].paths.state
    return WatcherView(node, load_state(state_path(state)), load_stats(stats_path(state)))


def _set_daemons(obs: Observation, node: str, reply: P.StatusReply) -> None:
    obs.daemons[node] = reply.daemons


def gather(duo: Duo, client: NodeClient, limits: Thresholds, timeout: float = DEFAULT_TIMEOUT) -> Observation:
    started = time.monotonic()
    obs = Observation(at=time.time(), lifetimes=lifetimes(duo))

    def got(what: str, future: Future[T], use: Callable[[T], None]) -> None:
        try:
            use(future.result())
        except (DuoError, OSError, ValueError) as exc:
            obs.errors.append(f"{what}: {exc}")
            log.warning("metrics: %s: %s", what, exc)

    with ThreadPoolExecutor(max_workers=2 * len(duo.nodes) + 2, thread_name_prefix="metrics") as threads:
        status = {n: threads.submit(client.call, n, P.STATUS, None, NODE_TIMEOUT) for n in duo.nodes}
        keys = {n: threads.submit(_key_states, client, n) for n in duo.nodes}
        bundles = threads.submit(client.call, "backup", P.BUNDLE_LIST, None, NODE_TIMEOUT)
        snapshot = threads.submit(client.call, "backup", P.SNAPSHOT_GET, None, NODE_TIMEOUT)
        reports = threads.submit(check_duo, duo, client, [], limits, None, timeout)
        for node in duo.nodes:
            got(f"node {node} status", status[node], partial(_set_daemons, obs, node))
            got(f"node {node} key states", keys[node], partial(obs.keys.__setitem__, node))
        got("backup bundles", bundles, lambda r: setattr(obs, "bundles", len(r.bundles)))

        def taken(reply: P.SnapshotGetReply) -> None:
            obs.snapshot_taken = reply.snapshot.taken if reply.snapshot else None

        got("backup snapshot", snapshot, taken)
        got("check", reports, lambda r: setattr(obs, "reports", r))
    for node in duo.nodes:
        try:
            obs.watchers.append(_watcher(duo, node))
        except (OSError, ValueError, TypeError) as exc:
            obs.errors.append(f"watcher {node}: {exc}")
    obs.duration = time.monotonic() - started
    return obs
