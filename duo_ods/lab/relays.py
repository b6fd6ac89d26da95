"""The lab's transfer relays: one BIND instance per signer node, started with the lab's secondaries
and stopped by pid with them (a deployment runs it as a service: docs/operators-guide.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from duo_ods import process
from duo_ods.bind.relay import relay_files
from duo_ods.config.resolve import Duo
from duo_ods.errors import LabError
from duo_ods.lab.net import check_free
from duo_ods.lab.secondaries import add_address, wait_answering
from duo_ods.relay.catalog import catalog_name
from duo_ods.relay.sync import load_state, write_relay_config


def start(duo: Duo, name: str, ledger: Path, timeout: float = 30.0) -> int:
    """Start the node's relay (with the zones it carried before, if any); returns its pid."""
    node = duo.node(name)
    files = relay_files(node)
    if (record := process.running(files["record"])) is not None:
        return record.pid
    check_free(node.relay_address, node.relay_port, f"relay of node {name}")
    add_address(node.relay_address, ledger)  # named listens only on an address lo has
    write_relay_config(duo, node, catalog_name(duo, name), load_state(files["state"]).zones)
    try:
        record = process.spawn(
            f"relay {name}",
            ["named", "-f", "-c", str(files["conf"])],
            files["stderr"],
            files["record"],
            cwd=node.relay_dir,
        )
    except OSError as exc:
        raise LabError(f"relay of node {name}: {exc}") from None
    what = f"relay of node {name}"
    wait_answering(node.relay_address, node.relay_port, record, files["stderr"], what, timeout=timeout)
    return record.pid


def stop_all(lab_dir: Path) -> dict[str, str]:
    """By their pid records: works whether or not the config still loads."""
    return {r.parent.parent.name: process.stop(r) for r in sorted(lab_dir.glob("nodes/*/relay/named.json"))}


def status(duo: Duo, name: str) -> dict[str, Any]:
    node = duo.node(name)
    files = relay_files(node)
    record = process.running(files["record"])
    state = load_state(files["state"])
    return {
        "node": name,
        "address": node.relay_address,
        "port": node.relay_port,
        "pid": record.pid if record else None,
        "catalog": state.catalog or catalog_name(duo, name),
        "catalog_serial": state.serial,
        "zones": len(state.zones),
        "members": len(state.members),
        "named_conf": str(files["conf"]),
        "log": str(files["log"]),
    }
