"""The embedded lab: a whole duo (or trio, up to five nodes) on this one machine, built with the
same code a deployment uses.

`up` renders a config into the lab folder, then drives every node through the
transport exactly as the controller drives real nodes: init, start, policy
import, zone add. `down` stops everything `up` started, by pid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duo_ods import process
from duo_ods.backup.snapshot import take_snapshot
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.dns.query import soa_serial
from duo_ods.dns.tsig import ensure_tsig_key
from duo_ods.errors import ConfigError, DuoError, LabError
from duo_ods.keys.flow import create_key
from duo_ods.keys.kek import kek_init, kek_status
from duo_ods.keys.listing import ds_for_zone, list_keys
from duo_ods.lab import exporter, relays, secondaries
from duo_ods.lab import parent as lab_parent
from duo_ods.lab.net import address_plan, check_free
from duo_ods.node import daemons
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.relay.control import relay_sync_all
from duo_ods.render.engine import render, write_atomic
from duo_ods.transport import transport_for
from duo_ods.zones.manage import add_zone, node_zones

log = logging.getLogger(__name__)

EXAMPLE_ZONE = "example.test"


@dataclass(frozen=True)
class LabLayout:
    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "duo.toml"

    @property
    def input_dir(self) -> Path:
        return self.dir / "input"

    @property
    def example_zone_file(self) -> Path:
        return self.input_dir / EXAMPLE_ZONE

    @property
    def address_ledger(self) -> Path:
        """The loopback addresses the lab added (and so removes)."""
        return self.dir / "state" / "addresses.json"


@dataclass(frozen=True)
class LabOptions:
    base_address: str = "127.0.0.10"
    port: int = 53
    algorithm: int = 13
    split: bool = False  # one secondary per signer, instead of one in failover mode
    nodes: int = 2  # a, b, c, ... (lab/net.py: address_plan)
    parent: bool = False  # a parent zone test. for the lab's zones (lab/parent.py)


def _write_config(layout: LabLayout, options: LabOptions) -> None:
    plan = address_plan(options.base_address, options.nodes, options.split)
    text = render(
        "lab-duo.toml.j2",
        {
            "nodes": plan.nodes,
            "port": options.port,
            "algorithm": options.algorithm,
            "mode": "split" if options.split else "failover",
            "secondaries": plan.secondaries,
        },
    )
    if options.parent:
        text += lab_parent.plan(layout.dir, plan.parent, options.port)
    write_atomic(layout.config, text)


def write_config(lab_dir: Path, options: LabOptions) -> Path:
    """Only the lab's config, refusing to overwrite one (lab up uses whatever is there)."""
    layout = LabLayout(lab_dir.resolve())
    if layout.config.exists():
        raise LabError(f"{layout.config} exists already: edit it or remove the lab folder")
    layout.dir.mkdir(parents=True, exist_ok=True)
    _write_config(layout, options)
    return layout.config


class _LoggedActions(list[str]):
    """The actions lab up reports, each logged as it is done: a progress display shows them live."""

    def append(self, action: str) -> None:
        super().append(action)
        log.info("lab up: %s", action)


def _today_serial() -> int:
    return int(time.strftime("%Y%m%d")) * 100


def up(lab_dir: Path, options: LabOptions | None = None) -> dict[str, Any]:
    """Bring the lab up (or finish bringing it up); returns its status plus what was done."""
    options = options or LabOptions()
    layout = LabLayout(lab_dir.resolve())
    layout.dir.mkdir(parents=True, exist_ok=True)
    if not layout.config.exists():
        _write_config(layout, options)
    duo = load_config(layout.config)
    with NodeClient(transport_for(duo)) as client:  # its node agents stop with it
        return _up(layout, duo, client)


def _up(layout: LabLayout, duo: Duo, client: NodeClient) -> dict[str, Any]:
    actions: list[str] = _LoggedActions()
    t = duo.config.transfer
    ensure_tsig_key(duo.tsig_key_path, t.key_name, t.algorithm)
    client.call("backup", P.BACKUP_INIT)
    already = all(daemons.running(n, d) for n in duo.nodes.values() for d in daemons.DAEMONS)
    for name, node in duo.nodes.items():
        if not any(daemons.running(node, d) for d in daemons.DAEMONS):
            check_free(node.address, node.port, f"node {name}")
        client.call(name, P.INIT)
        client.call(name, P.START)
        client.call(name, P.POLICY_IMPORT)
        actions.append(f"node {name} running on {node.address} port {node.port}")
    zones = node_zones(duo, client)
    if not all(EXAMPLE_ZONE in z for z in zones.values()):
        layout.input_dir.mkdir(parents=True, exist_ok=True)
        if not layout.example_zone_file.exists():
            write_atomic(
                layout.example_zone_file,
                render("example.zone.j2", {"zone": EXAMPLE_ZONE, "serial": _today_serial()}),
            )
        add_zone(duo, client, EXAMPLE_ZONE, layout.example_zone_file)
        actions.append(f"zone {EXAMPLE_ZONE} added on every node")
    if not all(s.has_kek for s in kek_status(duo, client).values()):
        made = kek_init(duo, client)
        actions.append(f"KEK {made['fingerprint']} in {', '.join(made['holders'])}")
    if not list_keys(duo, client, EXAMPLE_ZONE):
        for key in create_key(duo, client, EXAMPLE_ZONE, None, None):
            actions.append(
                f"{key.role} {key.locator} (key tag {key.keytag}) shared by {', '.join(key.imported_on)}"
            )
        snap = take_snapshot(duo, client)
        actions.append(f"backup snapshot of node {snap['node']} ({snap['zones']} zones)")
    for name in duo.nodes:  # the relays first: the secondaries pull from them
        actions.append(f"relay of node {name} (named pid {relays.start(duo, name, layout.address_ledger)})")
    relay_sync_all(duo, client, settle=30.0)  # the catalogs list the signed zones
    for name in duo.secondary_dirs:
        pid = secondaries.start(duo, name, layout.address_ledger)
        config = duo.secondary(name)
        actions.append(f"secondary {name} (named pid {pid}) on {config.address} port {config.port}")
    _wait_for_secondaries(duo, EXAMPLE_ZONE)
    actions += lab_parent.start_for(duo, client, layout.dir, layout.address_ledger)
    for name, node in duo.nodes.items():
        pid = _start_watcher(layout, duo, name)
        actions.append(f"watcher for node {name} (pid {pid}) on {node.input_dir}")
    actions.append(exporter.start(layout.dir, duo))
    result = status(layout.dir)
    result["ds"] = ds_for_zone(duo, client, EXAMPLE_ZONE).ds
    result["already_running"] = already
    result["actions"] = actions
    return result


def _wait_for_secondaries(duo: Duo, zone: str, timeout: float = 60.0) -> None:
    """Until every lab secondary serves the zone (the signers sign it within seconds of its keys)."""
    deadline = time.monotonic() + timeout
    for sec in duo.config.secondaries:
        if sec.name not in duo.secondary_dirs:
            continue
        while soa_serial(sec.address, sec.port, zone) is None:
            if time.monotonic() > deadline:
                raise LabError(
                    f"secondary {sec.name} does not serve {zone} after {timeout:.0f} s; see its named.log"
                )
            time.sleep(0.3)


def _watcher_files(layout: LabLayout, node: str) -> tuple[Path, Path]:
    return layout.dir / "state" / f"watch-{node}.json", layout.dir / "log" / f"watch-{node}.log"


def _start_watcher(layout: LabLayout, duo: Duo, node: str) -> int:
    """One `ods-duo watch --node NODE` per node, as a service would run it."""
    record, logfile = _watcher_files(layout, node)
    if (running := process.running(record)) is not None:
        return running.pid
    argv = [*process.python_module("duo_ods"), "--config", str(duo.config_path), "watch", "--node", node]
    return process.spawn(f"watch {node}", argv, logfile, record).pid


def _stop_secondaries(layout: LabLayout) -> dict[str, str]:
    """By their pid records: works whether or not the config still loads."""
    stopped = {r.parent.name: process.stop(r) for r in sorted(layout.dir.glob("secondaries/*/named.json"))}
    stopped.update({f"relay-{n}": state for n, state in relays.stop_all(layout.dir).items()})
    if (parent := lab_parent.stop(layout.dir)) is not None:
        stopped["parent"] = parent
    secondaries.remove_addresses(layout.address_ledger)
    return stopped


def down(lab_dir: Path) -> dict[str, Any]:
    """Stop every daemon the lab started, by pid. Files stay for inspection."""
    layout = LabLayout(lab_dir.resolve())
    if not layout.config.exists():
        raise LabError(f"{layout.dir}: no lab here (no duo.toml)")
    stopped: dict[str, Any] = {}
    problems: list[str] = []
    watchers = {r.stem: process.stop(r) for r in sorted(layout.dir.glob("state/watch-*.json"))}
    metrics = exporter.stop(layout.dir)
    secondaries_stopped = _stop_secondaries(layout)
    try:
        duo = load_config(layout.config)
    except ConfigError as exc:
        # The config changed since lab up and no longer loads: the daemons must stop all the same.
        problems.append(str(exc))
        for state in sorted(layout.dir.glob("nodes/*/state")):
            stopped[state.parent.name] = daemons.stop_recorded(state)
        return {"lab_dir": str(layout.dir), "stopped": stopped, "secondaries": secondaries_stopped,
                "watchers": watchers, "exporter": metrics, "problems": problems}  # fmt: skip
    with NodeClient(transport_for(duo)) as client:
        # One node after the other, on purpose: with five nodes stopped at once, an ods-enforcerd
        # outlasted its 20 s SIGTERM grace (and was killed) in two of three runs; one after the other
        # each node stops within a second (measured on the 2-CPU test machine).
        for name in duo.nodes:
            try:
                stopped[name] = client.call(name, P.STOP).daemons
            except DuoError as exc:
                problems.append(f"node {name}: {exc}")
    # Whatever the transport could not stop, stop here by the recorded pids.
    for name, node in duo.nodes.items():
        if any(daemons.running(node, d) for d in daemons.DAEMONS):
            stopped[name] = daemons.stop(node)
    if problems:
        log.warning("lab down: %s", "; ".join(problems))
    return {
        "lab_dir": str(layout.dir),
        "stopped": stopped,
        "secondaries": secondaries_stopped,
        "watchers": watchers,
        "exporter": metrics,
        "problems": problems,
    }


def status(lab_dir: Path) -> dict[str, Any]:
    layout = LabLayout(lab_dir.resolve())
    if not layout.config.exists():
        raise LabError(f"{layout.dir}: no lab here (no duo.toml); run lab up")
    duo = load_config(layout.config)
    return {
        "lab_dir": str(layout.dir),
        "config": str(layout.config),
        "input_dir": str(layout.input_dir),
        "nodes": [_node_status(duo, name) for name in duo.nodes],
        "secondaries": [secondaries.status(duo, s.name) for s in duo.config.secondaries],
        "relays": [relays.status(duo, name) for name in duo.nodes],
        "watchers": [_watcher_status(layout, duo, name) for name in duo.nodes],
        "exporter": exporter.status(layout.dir, duo),
        "parent": lab_parent.status(layout.dir),
    }


def _watcher_status(layout: LabLayout, duo: Duo, node: str) -> dict[str, Any]:
    record, logfile = _watcher_files(layout, node)
    running = process.running(record)
    pid = running.pid if running else None
    return {"node": node, "pid": pid, "input_dir": str(duo.nodes[node].input_dir), "log": str(logfile)}


def _node_status(duo: Duo, name: str) -> dict[str, Any]:
    node = duo.nodes[name]
    entry: dict[str, Any] = {
        "name": name,
        "address": node.address,
        "port": node.port,
        "config": str(duo.config_path),
        "input_dir": str(node.input_dir),
        "base_dir": str(node.paths.base),
        "daemons": daemons.status(node),
        "zones": [],
    }
    # A node that is down is shown as down, never a reason for status to fail.
    entry["down"] = all(pid is None for pid in entry["daemons"].values())
    if entry["daemons"]["enforcerd"] is not None:
        try:
            with NodeClient(transport_for(duo)) as client:
                listed = client.call(name, P.ZONE_LIST)
            entry["zones"] = [z.model_dump(mode="json") for z in listed.zones]
        except DuoError as exc:
            entry["error"] = str(exc)
    return entry
