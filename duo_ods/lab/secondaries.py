"""Secondaries that ods-duo runs itself (the lab's): own loopback address, config rendered and checked,
named run and stopped by pid. Their config names only the duo's catalogs (from the relays): zones come
and go through the catalogs, so named.conf is not touched after it is first written."""

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
from duo_ods.bind.render import (
    check_named_conf,
    primaries_for,
    render_catalog_options,
    render_catalog_zones,
    render_named_conf,
)
from duo_ods.config.resolve import Duo
from duo_ods.errors import LabError
from duo_ods.keys.listing import list_keys
from duo_ods.lab.net import check_free
from duo_ods.process import run
from duo_ods.protocol.client import NodeClient
from duo_ods.relay.control import relay_sync_all
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
        "options": directory / "options.conf",
        "record": directory / "named.json",
        "stderr": directory / "named.stderr",
        "log": directory / "named.log",
    }


def configure(duo: Duo, name: str) -> tuple[Path, bool]:
    """Render and check this secondary's named.conf, catalogs and options; returns the named.conf path
    and whether anything changed (unchanged files are not rewritten)."""
    directory = duo.secondary_dirs[name]
    (directory / "zones").mkdir(parents=True, exist_ok=True)
    (directory / "catzones").mkdir(parents=True, exist_ok=True)
    files = _files(directory)
    mode = duo.config.transfer.mode
    texts = {
        "zones": render_catalog_zones(duo, name, mode),
        "options": render_catalog_options(duo, name, mode, str(directory / "catzones")),
        "conf": render_named_conf(
            duo, name, directory, duo.tsig_key_path, files["zones"], options_file=files["options"]
        ),
    }
    if all(_same(files[k], text) for k, text in texts.items()):
        return files["conf"], False
    news = {k: files[k].with_name(files[k].name + ".new") for k in texts}
    for k, text in texts.items():
        conf_text = text
        if k == "conf":  # check the candidate set as a whole, as named will read it
            conf_text = text.replace(f'"{files["zones"]}"', f'"{news["zones"]}"').replace(
                f'"{files["options"]}"', f'"{news["options"]}"'
            )
        write_atomic(news[k], conf_text)
    check_named_conf(news["conf"])
    for k in ("zones", "options"):
        os.replace(news[k], files[k])
    write_atomic(files["conf"], texts["conf"])
    news["conf"].unlink()
    return files["conf"], True


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except FileNotFoundError:
        return False


def _answers(address: str, port: int) -> bool:
    query = dns.message.make_query("version.bind", dns.rdatatype.TXT, "CH")
    try:
        dns.query.udp(query, address, port=port, timeout=1)
    except (dns.exception.DNSException, OSError):
        return False
    return True


def start(duo: Duo, name: str, ledger: Path, timeout: float = 30.0) -> int:
    """Start (or reconfigure) the secondary; returns its pid."""
    config = duo.secondary(name)
    files = _files(duo.secondary_dirs[name])
    record = process.running(files["record"])
    if record is None:
        check_free(config.address, config.port, f"secondary {name}")
    add_address(config.address, ledger)
    if record is not None:
        reconfigure(duo, name)
        return record.pid
    conf, _ = configure(duo, name)
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
    wait_answering(config.address, config.port, record, files["stderr"], f"secondary {name}", timeout=timeout)
    return record.pid


def wait_answering(
    address: str, port: int, record: process.ProcessRecord, stderr: Path, what: str, *, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(address, port):
        if not process.is_alive(record):
            raise LabError(f"{what}: named died at start: {process.tail(stderr)}")
        if time.monotonic() > deadline:
            raise LabError(f"{what}: named did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def reconfigure(duo: Duo, name: str) -> None:
    """A running secondary whose config changed (the duo config did): render, check, SIGHUP."""
    _, changed = configure(duo, name)
    record = process.running(_files(duo.secondary_dirs[name])["record"])
    if changed and record is not None:
        os.kill(record.pid, signal.SIGHUP)


def sync_signed(duo: Duo, client: NodeClient, settle: float = 5.0) -> None:
    """After zones or keys changed: every node's relay and catalog follow what its signer serves, so
    the secondaries (the lab's and any that consume the catalogs) learn it. Two rounds: the relay
    takes a zone once its signer serves it, the catalog lists it once the relay serves it."""
    relay_sync_all(duo, client, settle)


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
