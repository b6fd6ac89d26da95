"""Secondaries that ods-duo runs itself (the lab's): own loopback address, config rendered and checked,
named run and stopped by pid, reconfigured when zones come."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from duo_ods import process
from duo_ods.bind.render import check_named_conf, primaries_for, render_named_conf, render_zones
from duo_ods.config.resolve import Duo
from duo_ods.errors import LabError
from duo_ods.keys.listing import list_keys
from duo_ods.lab.net import check_free
from duo_ods.process import run
from duo_ods.protocol.client import NodeClient
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)


def _has_address(address: str) -> bool:
    out = run(["ip", "-o", "addr", "show", "dev", "lo"], timeout=10).stdout
    return any(f" {address}/" in line for line in out.splitlines())


def add_address(address: str, ledger: Path) -> None:
    """BIND listens only on addresses an interface has: put it on lo, and note that we did."""
    if _has_address(address):
        return
    run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], timeout=10)
    added = set(json.loads(ledger.read_text())) if ledger.exists() else set()
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text(json.dumps(sorted(added | {address})))


def remove_addresses(ledger: Path) -> list[str]:
    """Take off lo exactly the addresses the lab put there."""
    if not ledger.exists():
        return []
    removed = []
    for address in json.loads(ledger.read_text()):
        if _has_address(address):
            run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], timeout=10)
            removed.append(address)
    ledger.unlink()
    return removed


def _files(directory: Path) -> dict[str, Path]:
    return {
        "conf": directory / "named.conf",
        "zones": directory / "zones.conf",
        "record": directory / "named.json",
        "stderr": directory / "named.stderr",
        "log": directory / "named.log",
    }


def configure(duo: Duo, name: str, zones: list[str]) -> Path:
    """Render and check this secondary's named.conf and zone list; returns the named.conf path."""
    directory = duo.secondary_dirs[name]
    (directory / "zones").mkdir(parents=True, exist_ok=True)
    files = _files(directory)
    write_atomic(files["zones"], render_zones(duo, name, duo.config.transfer.mode, zones))
    text = render_named_conf(duo, name, directory, duo.tsig_key_path, files["zones"])
    candidate = directory / "named.conf.new"
    write_atomic(candidate, text)
    check_named_conf(candidate)
    os.replace(candidate, files["conf"])
    return files["conf"]


def _answers(address: str, port: int) -> bool:
    query = dns.message.make_query("version.bind", dns.rdatatype.TXT, "CH")
    try:
        dns.query.udp(query, address, port=port, timeout=1)
    except (dns.exception.DNSException, OSError):
        return False
    return True


def start(duo: Duo, name: str, zones: list[str], ledger: Path, timeout: float = 30.0) -> int:
    """Start (or reconfigure) the secondary; returns its pid."""
    config = duo.secondary(name)
    files = _files(duo.secondary_dirs[name])
    record = process.running(files["record"])
    if record is None:
        check_free(config.address, config.port, f"secondary {name}")
    add_address(config.address, ledger)
    if record is not None:
        reconfigure(duo, name, zones)
        return record.pid
    conf = configure(duo, name, zones)
    try:
        record = process.spawn(
            f"named {name}",
            ["named", "-f", "-d", "3", "-c", str(conf)],
            files["stderr"],
            files["record"],
            cwd=conf.parent,  # named -d writes named.run into its working directory
        )
    except OSError as exc:
        raise LabError(f"secondary {name}: {exc}") from None
    deadline = time.monotonic() + timeout
    while not _answers(config.address, config.port):
        if not process.is_alive(record):
            raise LabError(f"secondary {name}: named died at start: {process.tail(files['stderr'])}")
        if time.monotonic() > deadline:
            raise LabError(f"secondary {name}: named did not answer within {timeout:.0f} s")
        time.sleep(0.1)
    return record.pid


def reconfigure(duo: Duo, name: str, zones: list[str]) -> None:
    """New zone list for a running secondary: render, check, SIGHUP (named reloads)."""
    configure(duo, name, zones)
    record = process.running(_files(duo.secondary_dirs[name])["record"])
    if record is not None:
        os.kill(record.pid, signal.SIGHUP)


def sync(duo: Duo, zones: list[str]) -> None:
    """Every secondary ods-duo runs itself learns the current zone list (others: `bind-config`)."""
    for name in duo.secondary_dirs:
        if process.running(_files(duo.secondary_dirs[name])["record"]) is not None:
            reconfigure(duo, name, zones)


def sync_signed(duo: Duo, client: NodeClient) -> None:
    """The secondaries ods-duo runs itself get the zones that have keys (so are signed or about to
    be). A zone without keys is not served by the signers: a secondary would only fail to refresh
    it, again and again, and that delays its real transfers."""
    if duo.secondary_dirs:
        sync(duo, signed_zones(duo, client))


def signed_zones(duo: Duo, client: NodeClient) -> list[str]:
    """The zones that have keys: the ones the signers serve (or are about to)."""
    return sorted({row["zone"] for row in list_keys(duo, client)})


def stop(duo: Duo, name: str) -> str:
    return process.stop(_files(duo.secondary_dirs[name])["record"])


def status(duo: Duo, name: str) -> dict[str, Any]:
    config = duo.secondary(name)
    directory = duo.secondary_dirs.get(name)
    files = _files(directory) if directory else None
    record = process.running(files["record"]) if files else None
    return {
        "name": name,
        "address": config.address,
        "port": config.port,
        "mode": duo.config.transfer.mode,
        "primaries": primaries_for(duo, name, duo.config.transfer.mode),
        "named_conf": str(files["conf"]) if files else None,
        "log": str(files["log"]) if files else None,
        "pid": record.pid if record else None,
        "config": str(duo.config_path),
    }
