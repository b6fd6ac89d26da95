"""The exporter's two refreshes, each from its own sources, each source on its own:

- the check (slow, `--check-interval`): `check` on every zone, every node's key states, the backup
  store's bundles and snapshot;
- the refresh (cheap, `--interval`): every node's daemons, the watchers' files, plus the last check.

A source that cannot be read is left out of the metrics and counted in
`ods_duo_exporter_refresh_errors` (its reason logged); the rest still shows. The watchers' files
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
from duo_ods.metrics.observation import Checked, KeyViews, Observation, WatcherView
from duo_ods.metrics.watchfile import load_stats, stats_path
from duo_ods.node.supervise import restart_counts
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
    return WatcherView(
        node, load_state(state_path(state)), load_stats(stats_path(state)), restart_counts(state)
    )


def _taker(errors: list[str]) -> Callable[[str, Future[T], Callable[[T], object]], None]:
    def take(what: str, future: Future[T], use: Callable[[T], object]) -> None:
        try:
            use(future.result())
        except (DuoError, OSError, ValueError) as exc:
            errors.append(f"{what}: {exc}")
            log.warning("metrics: %s: %s", what, exc)

    return take


def _set_taken(found: Checked, reply: P.SnapshotGetReply) -> None:
    found.snapshot_taken = reply.snapshot.taken if reply.snapshot else None


def check(duo: Duo, client: NodeClient, limits: Thresholds, timeout: float = DEFAULT_TIMEOUT) -> Checked:
    """The slow part: check's reports, the key states, the backup store."""
    started = time.monotonic()
    found = Checked(at=time.time())
    take = _taker(found.errors)
    with ThreadPoolExecutor(max_workers=len(duo.nodes) + 3, thread_name_prefix="metrics-check") as threads:
        keys = {n: threads.submit(_key_states, client, n) for n in duo.nodes}
        bundles = threads.submit(client.call, "backup", P.BUNDLE_LIST, None, NODE_TIMEOUT)
        snapshot = threads.submit(client.call, "backup", P.SNAPSHOT_GET, None, NODE_TIMEOUT)
        verified = threads.submit(client.call, "backup", P.VERIFY_RECORD, None, NODE_TIMEOUT)
        reports = threads.submit(check_duo, duo, client, [], limits, None, timeout)
        for node in duo.nodes:
            take(f"node {node} key states", keys[node], partial(found.keys.__setitem__, node))
        take("backup bundles", bundles, lambda r: setattr(found, "bundles", len(r.bundles)))
        take("backup snapshot", snapshot, partial(_set_taken, found))
        take("backup verify", verified, lambda r: setattr(found, "verify", r.last))
        take("check", reports, lambda r: setattr(found, "reports", r))
    found.duration = time.monotonic() - started
    return found


def _set_daemons(obs: Observation, node: str, reply: P.StatusReply) -> None:
    obs.daemons[node] = reply.daemons


def gather(duo: Duo, client: NodeClient, checked: Checked | None) -> Observation:
    """The cheap part, with the last check's findings (None: no check finished yet)."""
    started = time.monotonic()
    obs = Observation(at=time.time(), lifetimes=lifetimes(duo))
    if checked is not None:
        obs.reports, obs.keys = checked.reports, checked.keys
        obs.bundles, obs.snapshot_taken = checked.bundles, checked.snapshot_taken
        obs.verify = checked.verify
        obs.checked_at, obs.check_duration = checked.at, checked.duration
        obs.errors += checked.errors
    take = _taker(obs.errors)
    with ThreadPoolExecutor(max_workers=len(duo.nodes), thread_name_prefix="metrics") as threads:
        status = {n: threads.submit(client.call, n, P.STATUS, None, NODE_TIMEOUT) for n in duo.nodes}
        for node in duo.nodes:
            take(f"node {node} status", status[node], partial(_set_daemons, obs, node))
    for node in duo.nodes:
        try:
            obs.watchers.append(_watcher(duo, node))
        except (OSError, ValueError, TypeError) as exc:
            obs.errors.append(f"watcher {node}: {exc}")
    obs.duration = time.monotonic() - started
    return obs
