"""`backup restore --node NODE`: rebuild a wiped node so it signs again with the same keys.

The node gets a fresh token, the KEK from the backup's token, every key its zones use from
the bundles, a fresh enforcer database with the zones, and each key's enforcer state as the
source had it. The source is the live peer when one answers (it has the newest state), else
the backup store's latest snapshot (both nodes lost: "flatliners").

Everything the rebuild needs is checked before the node is touched: a key without a bundle
stops the restore before anything is made.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from duo_ods.backup.snapshot import node_state
from duo_ods.bind.query import soa_serial
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.kek import send_kek
from duo_ods.ods.kaspdb import is_dead
from duo_ods.transport.base import Transport
from duo_ods.zones.manage import notify_secondaries, served_serials
from duo_ods.zones.serial import next_serial

log = logging.getLogger(__name__)

SOURCES = ("peer", "backup")
SIGN_WAIT = 120.0  # seconds for the rebuilt node to serve every zone


class RestoreError(DuoError):
    """A node cannot be restored as asked; the error names the step."""


def _step(
    name: str, target: str, transport: Transport, op: str, payload: dict[str, Any] | None = None
) -> Any:
    try:
        return transport.call(target, op, payload)
    except DuoError as exc:
        raise RestoreError(f"restore step {name} on {target}: {exc}") from exc


def _source_state(
    duo: Duo, transport: Transport, node: str, source: str | None
) -> tuple[str, dict[str, Any]]:
    """("peer" or "backup", the zones and key states to rebuild from): a live peer's, else the
    latest snapshot."""
    silent: list[str] = []
    if source in (None, "peer"):
        for peer in (n for n in duo.nodes if n != node):
            try:
                return "peer", node_state(transport, peer)
            except DuoError as exc:
                silent.append(f"{peer}: {exc}")
        if source == "peer":
            raise RestoreError("restore: no peer answers (" + "; ".join(silent) + "); use --from backup")
    snapshot = _step("source", "backup", transport, "snapshot-get")["snapshot"]
    if snapshot is None:
        raise RestoreError("restore: no peer answers and the backup store has no snapshot")
    if silent:
        log.warning(
            "restore: no peer answers (%s); using the snapshot of %s", "; ".join(silent), snapshot["node"]
        )
    return "backup", snapshot


def _preflight(duo: Duo, transport: Transport, node: str, state: dict[str, Any]) -> dict[str, KeyBundle]:
    status = _step("preflight", node, transport, "status")
    running = [d for d, pid in status["daemons"].items() if pid]
    if running:
        raise RestoreError(
            f"restore: node {node} runs {', '.join(running)}: restore rebuilds a dead node; stop it first"
        )
    if status.get("has_database"):
        raise RestoreError(
            f"restore: node {node} still has its enforcer database: restore rebuilds a wiped node; "
            "move the node's state away first"
        )
    bundles = {
        b.locator: b
        for b in map(KeyBundle.from_json, _step("preflight", "backup", transport, "bundle-list")["bundles"])
    }
    # The states are live_states already: dead keys need no bundle.
    missing = [
        f"{z['zone']} {k['role']} {k['keytag']} ({k['locator']})"
        for z in state["zones"]
        if z["states"]
        for k in z["states"]["keys"]
        if k["locator"] not in bundles
    ]  # fmt: skip
    if missing:
        raise RestoreError("restore: the backup store has no bundle for " + ", ".join(missing))
    return bundles


def live_states(zone_state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A zone's key states without its dead keys (kaspdb.is_dead): the rebuilt node needs neither
    them nor their bundles, which retention may have removed."""
    if zone_state is None:
        return None
    keys = [k for k in zone_state["keys"] if not is_dead(k)]
    live = {k["locator"] for k in keys}
    dependencies = [d for d in zone_state["dependencies"] if d[0] in live and d[1] in live]
    return {**zone_state, "keys": keys, "dependencies": dependencies}


def _copy_kek(transport: Transport, node: str) -> str:
    """The KEK from the backup's token into the node's (never in clear: RSA-OAEP to a transport key)."""
    want = _step("kek", "backup", transport, "kek-status")["fingerprint"]
    if want is None:
        raise RestoreError("restore step kek: the backup token has no KEK")
    have = _step("kek", node, transport, "kek-status")
    if have["has_kek"]:
        if have["fingerprint"] != want:
            raise RestoreError(
                f"restore step kek: node {node}'s token has another KEK ({have['fingerprint']})"
            )
        return str(want)
    try:
        got = send_kek(transport, "backup", node)
    except DuoError as exc:
        raise RestoreError(f"restore step kek: {exc}") from exc
    if got != want:
        raise RestoreError(f"restore step kek: node {node} holds KEK {got}, the backup {want}")
    return str(got)


def restore_node(duo: Duo, transport: Transport, node: str, source: str | None = None) -> dict[str, Any]:
    duo.node(node)  # a clear error for an unknown node
    if source is not None and source not in SOURCES:
        raise RestoreError(f"--from {source}: choose one of {', '.join(SOURCES)}")
    kind, state = _source_state(duo, transport, node, source)
    state = {**state, "zones": [{**z, "states": live_states(z["states"])} for z in state["zones"]]}
    bundles = _preflight(duo, transport, node, state)
    zones = state["zones"]
    keys = [(z["zone"], k) for z in zones if z["states"] for k in z["states"]["keys"]]
    log.info("restore node %s from %s: %d zones, %d keys", node, state["node"], len(zones), len(keys))

    try:
        _step("init", node, transport, "init")
        kek = _copy_kek(transport, node)
        for locator in sorted({k["locator"] for _, k in keys}):
            b = bundles[locator]
            payload = {"locator": b.locator, "algorithm": b.algorithm, "bits": b.bits, "public": b.public,
                       "wrapped": b.wrapped}  # fmt: skip
            if not _step("keys", node, transport, "key-unwrap", payload)["confirmed"]:
                raise RestoreError(f"restore step keys: node {node}'s HSM did not confirm key {locator}")
        _step("start", node, transport, "start")
        _step("policy", node, transport, "policy-import")
        _step(
            "zones",
            node,
            transport,
            "zone-add-batch",
            {"zones": [{"zone": z["zone"], "text": z["text"]} for z in zones]},
        )
        for zone, key in keys:
            b = bundles[key["locator"]]
            payload = {"zone": zone, "locator": b.locator, "role": key["role"], "algorithm": b.algorithm,
                       "bits": b.bits, "inception": key["inception"]}  # fmt: skip
            _step("import", node, transport, "key-import", payload)
        # The enforcer keeps its own view of rows while it runs: write the states with it stopped.
        _step("states", node, transport, "stop")
        written = _step(
            "states",
            node,
            transport,
            "key-states-write",
            {"zones": [z["states"] for z in zones if z["states"]]},
        )
        _step("start", node, transport, "start")
        _step("enforce", node, transport, "enforce")

    except DuoError as exc:
        _stop_quietly(transport, node)
        raise RestoreError(
            f"{exc}; node {node} is half restored and stopped: move its enforcer database away and run "
            "backup restore again"
        ) from exc

    serving = _wait_serving(duo, node, [z["zone"] for z in zones if z["states"]])
    serials = {zone: _catch_up(duo, transport, node, zone, above=kind == "backup") for zone in serving}
    return {
        "node": node, "source": state["node"], "from": kind,
        "snapshot_taken": state["taken"], "zones": [z["zone"] for z in zones], "keys": written["keys"],
        "kek": kek, "serving": serving, "serials": serials,
    }  # fmt: skip


def _catch_up(duo: Duo, transport: Transport, node: str, zone: str, above: bool) -> int | None:
    """Give the rebuilt node's zone a serial the secondaries will take.

    A fresh signer starts its serial over, below what the secondaries hold: they would keep
    the old copy until its signatures expire. From a peer, the rebuilt node takes the highest
    serial served (the secondaries have the peer's data); from a snapshot (no node was left),
    one above every serial served anywhere, and the secondaries are told.
    """
    served = served_serials(duo, zone)
    mine = served.get(node)
    seen = [s for s in served.values() if s is not None]
    seen += [
        s for sec in duo.config.secondaries if (s := soa_serial(sec.address, sec.port, zone)) is not None
    ]
    if mine is None or not seen:
        return mine
    target = next_serial(seen, duo.config.policy.serial) if above else max(seen)
    if mine >= target:
        return mine
    _step("serial", node, transport, "zone-resign", {"zone": zone, "serial": target})
    log.info("restore: node %s signs %s with serial %d (it restarted at %d)", node, zone, target, mine)
    deadline = time.monotonic() + 30
    while (served_serials(duo, zone).get(node) or 0) < target and time.monotonic() < deadline:
        time.sleep(0.5)
    if above:
        notify_secondaries(duo, zone)
    return target


def _stop_quietly(transport: Transport, node: str) -> None:
    try:
        transport.call(node, "stop")
    except DuoError as exc:
        log.error("restore: could not stop the half-restored node %s: %s", node, exc)


def _wait_serving(duo: Duo, node: str, zones: list[str]) -> list[str]:
    """The zones the rebuilt node serves signed within SIGN_WAIT (zones with keys only)."""
    deadline = time.monotonic() + SIGN_WAIT
    serving: list[str] = []
    for zone in zones:
        while served_serials(duo, zone).get(node) is None:
            if time.monotonic() > deadline:
                log.warning("restore: node %s does not serve %s yet", node, zone)
                break
            time.sleep(1)
        else:
            serving.append(zone)
    return serving
