"""Catch-up: a node that missed a zone's newest input gets it, and its serial cannot let stale data win.

Want / observe / plan / apply, as duo_ods/node/plan.py:

- want: the controller's newest-input record of each zone (duo_ods.zones.inputs), written
  before any node was told;
- observe: each node's signer input per zone (INPUT_STATE: from its files, so a node whose
  daemons are down answers too) and whether its signer runs;
- plan (pure data, printed by `zone catch-up --dry-run`): per node and zone, write the input
  (signer down: it reads it when it starts) or write and sign it (signer up), or a reason to
  leave it (unreachable, the zone is not on the node, the node's input is newer than the record);
- apply: the writes, then for each signing node a serial chosen from every copy's serial and
  content (duo_ods.zones.serial.catch_up_serial), then a NOTIFY to the secondaries.

Why the order matters (ODS 2.1.12): ods-signerd raises its own serial on every re-sign, and a
signer that starts re-signs whatever input it has. A node that comes back with its old input
serves the old content at a serial above its last one, which may be above the newest content
elsewhere: a secondary then takes the stale copy. `node start` (start_node here) therefore writes
the newest input BEFORE it starts the daemons, and levels the serial after. A node restarted by
something else (a reboot, systemd) cannot be caught before it signs: ODS has no hook between
start and serving. The key origin's watcher runs catch_up every [serials] level_interval, so such
a stale copy is outranked within that interval plus one re-sign; `zone catch-up` does it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from duo_ods.config.resolve import Duo
from duo_ods.dns.tsig import TsigKey, transfer_key
from duo_ods.errors import DuoError, NodeError
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.zones.content import Copy, served_copy, text_content_digest
from duo_ods.zones.inputs import InputRecord, latest_input, recorded_zones
from duo_ods.zones.manage import notify_secondaries
from duo_ods.zones.serial import Seen, catch_up_serial, days_ahead

log = logging.getLogger(__name__)

MTIME_SLACK = 2.0  # seconds: a node's input written this long after the record is newer than it
SERVE_WAIT = 30.0  # seconds for a signer to serve what it was asked to sign
# Seconds before the signer is asked again. Workaround for ODS 2.1.12: a sign request that arrives
# while the signer is signing the zone (e.g. its first pass just after `node start`) is answered
# "scheduled for immediate re-sign" but may be merged into the pass under way, which read the older
# input: the newest content is then never signed (seen in test_random_ops: one pass at the asked
# serial, with the old content, and nothing after for 30 s).
NUDGE_AFTER = 5.0

Action = Literal["write", "sign", "level", "newer-on-node", "not-on-node", "unreachable"]
ACTING: frozenset[str] = frozenset({"write", "sign", "level"})


# --- want and observe ---------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    zone: str
    digest: str
    at: float


@dataclass(frozen=True)
class Input:
    """A node's signer input for a zone."""

    digest: str | None
    mtime: float | None
    pending: bool = False  # stored while its signer was down; its serial is not levelled yet


@dataclass(frozen=True)
class NodeView:
    node: str
    error: str | None = None  # the node did not answer: nothing else is known
    signer: bool = False
    inputs: dict[str, Input] = field(default_factory=dict)


def wants(records: Iterable[InputRecord]) -> dict[str, Want]:
    return {r.zone: Want(r.zone, r.digest, r.at) for r in records}


def observe(client: NodeClient, nodes: Iterable[str], zone: str | None = None) -> dict[str, NodeView]:
    """Every node's inputs (of every zone, or of `zone`) at once: a hung node must not hold up the others."""
    request = P.InputStateRequest(zone=zone)

    def one(node: str) -> NodeView:
        try:
            reply = client.call(node, P.INPUT_STATE, request)
        except DuoError as exc:
            return NodeView(node, error=str(exc))
        inputs = {z.zone: Input(z.digest, z.mtime, z.pending) for z in reply.zones}
        return NodeView(node, signer=reply.signer, inputs=inputs)

    names = list(nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


# --- plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    node: str
    zone: str  # "*" for the whole node (unreachable)
    action: Action
    detail: str

    @property
    def acts(self) -> bool:
        return self.action in ACTING

    def describe(self) -> str:
        verb = {
            "write": "write the newest input (signer down: it signs it when it starts)",
            "sign": "write the newest input and sign it above every stale serial",
            "level": "sign its input (stored while the signer was down) above every stale serial",
            "newer-on-node": "leave it: the node's input is newer than the record",
            "not-on-node": "leave it: the zone is not on this node",
            "unreachable": "cannot catch up now",
        }[self.action]
        return f"node {self.node} zone {self.zone}: {verb}" + (f" ({self.detail})" if self.detail else "")


def plan_catch_up(
    want: Mapping[str, Want], views: Mapping[str, NodeView], slack: float = MTIME_SLACK
) -> list[Step]:
    """What each node needs so that it signs every zone's newest input. Pure: no I/O."""
    steps: list[Step] = []
    for node, view in views.items():
        if view.error is not None:
            steps.append(Step(node, "*", "unreachable", view.error))
            continue
        for zone in sorted(want):
            w = want[zone]
            if zone not in view.inputs:
                # Not ours to add here: zone add (or the node's watcher) adds zones, with keys.
                steps.append(Step(node, zone, "not-on-node", ""))
                continue
            have = view.inputs[zone]
            if have.digest == w.digest:
                if have.pending and view.signer:  # a signer that started by itself picked its own serial
                    steps.append(Step(node, zone, "level", ""))
                continue
            if have.digest is not None and have.mtime is not None and have.mtime > w.at + slack:
                steps.append(
                    Step(node, zone, "newer-on-node", f"input written {have.mtime - w.at:.0f} s after")
                )
                continue
            steps.append(Step(node, zone, "sign" if view.signer else "write", ""))
    return steps


# --- apply --------------------------------------------------------------------------------


@dataclass
class CatchUpReport:
    steps: list[Step]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # "node zone": what happened
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not any(s.action == "unreachable" for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "steps": [asdict(s) for s in self.steps],
            "done": self.done,
            "failed": self.failed,
        }


class Copies:
    """Every signer's and secondary's copy of a zone, fetched at once (AXFR: serial and content)."""

    def __init__(self, duo: Duo, key: TsigKey | None) -> None:
        self.duo = duo
        self.key = key

    def fetch(self, zone: str) -> dict[str, Copy | None]:
        servers = {f"signer {n}": (node.address, node.port) for n, node in self.duo.nodes.items()}
        servers |= {f"secondary {s.name}": (s.address, s.port) for s in self.duo.config.secondaries}

        def one(where: tuple[str, int]) -> Copy | None:
            return served_copy(where[0], where[1], zone, self.key)

        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            return dict(zip(servers, pool.map(one, servers.values()), strict=True))


def choose_serial(
    duo: Duo, copies: Mapping[str, Copy | None], node: str, newest: str, now: float | None = None
) -> int | None:
    """catch_up_serial over fetched copies; `newest` is the content digest of the newest input."""
    seen = {w: Seen(c.serial, c.digest == newest) for w, c in copies.items() if c is not None}
    own = seen.pop(f"signer {node}", None)
    return catch_up_serial(seen, own, duo.config.policy.serial, now)


def _sign_at(duo: Duo, client: NodeClient, node: str, record: InputRecord, resign: bool) -> dict[str, Any]:
    """Have `node` sign the newest content above every stale copy; `resign`: its input is written
    already (the signer just started with it), else write it with the serial in one request."""
    newest = text_content_digest(record.text, record.zone)
    copies = Copies(duo, transfer_key(duo))
    target = choose_serial(duo, copies.fetch(record.zone), node, newest)
    if target is not None and (ahead := days_ahead(target, duo.config.policy.serial)):
        log.warning("zone %s: serial %d runs %d day(s) ahead of the date (datecounter)", record.zone,
                    target, ahead)  # fmt: skip
    if resign:
        if target is not None:
            client.call(node, P.ZONE_RESIGN, P.ZoneResignRequest(zone=record.zone, serial=target))
        else:  # its own serial is fine: on top, with the newest content
            client.call(node, P.ZONE_LEVELLED, P.ZoneRequest(zone=record.zone))
    else:
        request = P.ZoneUpdateRequest(zone=record.zone, text=record.text, serial=target)
        reply = client.call(node, P.ZONE_UPDATE, request)
        if not reply.signing:
            raise NodeError(f"node {node}: zone {record.zone}: {reply.note or 'the signer did not take it'}")

    def ask_again() -> int | None:
        again = choose_serial(duo, copies.fetch(record.zone), node, newest)
        log.warning("zone %s: node %s does not serve the newest content yet; its signer is asked again "
                    "(serial %s)", record.zone, node, again or "its own")  # fmt: skip
        if again is not None:
            client.call(node, P.ZONE_RESIGN, P.ZoneResignRequest(zone=record.zone, serial=again))
        return again

    served = _wait_copy(copies, record.zone, node, newest, target, ask_again=ask_again)
    if served is None:
        raise NodeError(
            f"node {node}: zone {record.zone}: asked to sign the newest input (serial "
            f"{target or 'its own'}), but it does not serve it after {SERVE_WAIT:.0f} s"
        )
    notified = notify_secondaries(duo, record.zone)
    log.info("zone %s: node %s caught up, serves serial %s", record.zone, node, served)
    return {"serial": served, "target": target, "notified": notified}


def _wait_copy(
    copies: Copies, zone: str, node: str, newest: str, target: int | None, *,
    ask_again: Callable[[], int | None] | None = None,
) -> int | None:  # fmt: skip
    """Until the node serves the newest content (at `target` when one was chosen): its serial.
    `ask_again` every NUDGE_AFTER seconds meanwhile (it returns the serial it asked for)."""
    deadline = time.monotonic() + SERVE_WAIT
    nudge_at = time.monotonic() + NUDGE_AFTER
    address, port = copies.duo.nodes[node].address, copies.duo.nodes[node].port
    while True:
        copy = served_copy(address, port, zone, copies.key)
        if copy is not None and copy.digest == newest and (target is None or copy.serial >= target):
            return copy.serial
        now = time.monotonic()
        if now > deadline:
            log.warning("zone %s: node %s does not serve the newest content after %.0f s", zone, node,
                        SERVE_WAIT)  # fmt: skip
            return None
        if ask_again is not None and now >= nudge_at:
            target = ask_again() or target
            nudge_at = now + NUDGE_AFTER
        time.sleep(0.3)


def apply_catch_up(duo: Duo, client: NodeClient, steps: list[Step]) -> CatchUpReport:
    report = CatchUpReport(steps)
    records: dict[str, InputRecord] = {}
    for step in (s for s in steps if s.acts):
        where = f"{step.node} {step.zone}"
        try:
            record = records.get(step.zone) or latest_input(duo, step.zone)
            if record is None:
                raise NodeError(f"zone {step.zone}: no newest-input record")
            records[step.zone] = record
            if step.action == "write":
                request = P.ZoneUpdateRequest(zone=step.zone, text=record.text)
                reply = client.call(step.node, P.ZONE_UPDATE, request)
                report.done[where] = {"stored": True, "note": reply.note}
            else:
                resign = step.action == "level"
                report.done[where] = _sign_at(duo, client, step.node, record, resign=resign)
        except DuoError as exc:
            report.failed[where] = str(exc)
            log.error("zone %s: node %s not caught up: %s", step.zone, step.node, exc)
    return report


def catch_up(
    duo: Duo,
    client: NodeClient,
    nodes: Iterable[str] | None = None,
    dry_run: bool = False,
    zone: str | None = None,
) -> CatchUpReport:
    """Bring every node (or `nodes`) to each zone's (or `zone`'s) newest recorded input.

    The key origin's watcher's entry point, every [serials] level_interval (zones.level.level_zone
    calls it per zone too). Cheap when nothing is missing: one INPUT_STATE per node, no DNS traffic.
    """
    names = list(nodes) if nodes is not None else list(duo.nodes)
    for name in names:
        duo.node(name)  # a clear error for an unknown node
    zones = [zone] if zone is not None else recorded_zones(duo)
    want = wants(r for z in zones if (r := latest_input(duo, z)) is not None)
    if not want:
        return CatchUpReport([])
    steps = plan_catch_up(want, observe(client, names, zone))
    if dry_run:
        return CatchUpReport(steps)
    return apply_catch_up(duo, client, steps)


def start_node(duo: Duo, client: NodeClient, node: str) -> dict[str, Any]:
    """`node start`: the newest inputs first, then the daemons, then serials above any stale copy.

    With its daemons down the node stores new input (checked against its zonelist.xml); the signer
    reads it as it starts, so it never re-signs the old input at a new serial. Zones whose input was
    stored while the signer was down (by `zone update`, the watcher or `zone catch-up`) and zones
    written here are then signed with a serial chosen from every copy (catch_up_serial).
    """
    duo.node(node)
    want = wants(r for z in recorded_zones(duo) if (r := latest_input(duo, z)) is not None)
    view = observe(client, [node])[node]
    steps = plan_catch_up(want, {node: view})
    report = CatchUpReport(steps)
    level = sorted(z for z, i in view.inputs.items() if i.pending and z in want)
    for step in (s for s in steps if s.action in ("write", "sign")):
        record = latest_input(duo, step.zone)
        if record is None:
            continue
        try:
            client.call(node, P.ZONE_UPDATE, P.ZoneUpdateRequest(zone=step.zone, text=record.text))
        except DuoError as exc:
            report.failed[f"{node} {step.zone}"] = str(exc)
            continue
        level.append(step.zone)
    started = client.call(node, P.START)
    for zone in sorted(set(level)):
        record = latest_input(duo, zone)
        if record is None:
            continue
        try:
            report.done[f"{node} {zone}"] = _sign_at(duo, client, node, record, resign=True)
        except DuoError as exc:
            report.failed[f"{node} {zone}"] = str(exc)
    return {"node": node, "pids": started.pids, "caught_up": sorted(set(level)), **report.to_json()}
